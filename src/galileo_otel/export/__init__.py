"""How traces leave the process: assembly, conversion to Galileo steps, batching, delivery, spool."""
