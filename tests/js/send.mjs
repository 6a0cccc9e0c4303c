// Sends chat conversations to an OTLP/HTTP endpoint with the stock OpenTelemetry JS SDK and
// prints, as JSON, the spans whose export was acknowledged (result SUCCESS).
// Usage: node send.mjs <traces-url> '<json: {"headers": {...}, "turns": [{"conversation", "user"}]}>'
import { context, trace } from "@opentelemetry/api";
import { ExportResultCode } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

const [url, scenarioText] = process.argv.slice(2);
const scenario = JSON.parse(scenarioText);
const otlp = new OTLPTraceExporter({ url, headers: scenario.headers || {} });
const acked = [];
const failed = [];
// The stock exporter, wrapped only to record which spans it reported as exported.
const exporter = {
  export(spans, done) {
    otlp.export(spans, (result) => {
      for (const span of spans) {
        const ctx = span.spanContext();
        const entry = { traceId: ctx.traceId, spanId: ctx.spanId, parent: span.parentSpanContext?.spanId || null };
        (result.code === ExportResultCode.SUCCESS ? acked : failed).push(entry);
      }
      done(result);
    });
  },
  shutdown: () => otlp.shutdown(),
  forceFlush: () => otlp.forceFlush(),
};
const provider = new BasicTracerProvider({
  // The SDK's defaults (telemetry.sdk.language=nodejs...) under the app's own, as NodeSDK does.
  resource: defaultResource().merge(
    resourceFromAttributes({ "service.name": scenario.service || "js-chat" }),
  ),
  // Batching, as apps export: one request per turn (forceFlush below), its spans in end order.
  spanProcessors: [new BatchSpanProcessor(exporter)],
});
const tracer = provider.getTracer("galileo-otel-tests");

for (const turn of scenario.turns) {
  const root = tracer.startSpan("turn", {
    attributes: { "session.id": turn.conversation, "user.id": turn.user, "input.value": turn.question || "hi" },
  });
  const ctx = trace.setSpan(context.active(), root);
  const chat = tracer.startSpan(
    "chat gpt-test",
    {
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
      },
    },
    ctx,
  );
  chat.end();
  root.end();
  await provider.forceFlush();
}
await provider.shutdown();
process.stdout.write(JSON.stringify({ acked, failed }) + "\n");
