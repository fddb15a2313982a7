package io.linkloom.sdk;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One delivery of a step: parsed from the task envelope and the X-Loom-* headers (push), or from
 * a polled task (pull, where {@link #payload}, {@link #deliveries} and {@link #token} are set).
 */
public final class TaskRequest {
  public final String runId;
  public final String flowId;
  public final Integer flowVersion;
  public final String stepId;
  public final int attempt;
  public final String idempotencyKey;
  public final Map<String, Object> inputs;
  /** Per upstream step: {@code {"output": ..., "outputs": {...}}}. */
  public final Map<String, Object> upstream;
  public final Object item;
  public final Integer index;
  public final String callbackUrl;
  public final String heartbeatUrl;
  /** The parsed body as sent: the envelope, or the step's own body. */
  public final Object body;
  /** False when the flow declared its own body (the metadata came from the headers). */
  public final boolean isEnvelope;
  /** Lower-cased request headers (first value). */
  public final Map<String, String> headers;
  /** Pull mode: the step's rendered payload, the task's token, how often it was handed out. */
  public final Object payload;
  public final String token;
  public final int deliveries;
  private final List<String> logs = Collections.synchronizedList(new ArrayList<>());

  @SuppressWarnings("unchecked")
  TaskRequest(Map<String, Object> env, Object body, boolean isEnvelope, Map<String, String> headers, String token, int deliveries) {
    Map<String, Object> callback = env.get("callback") instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
    this.runId = first(str(env.get("run_id")), headers.get("x-loom-run-id"));
    this.flowId = first(str(env.get("flow_id")), headers.get("x-loom-flow-id"));
    this.flowVersion = integer(env.get("flow_version"), headers.get("x-loom-flow-version"));
    this.stepId = first(str(env.get("step_id")), headers.get("x-loom-step-id"));
    Integer attempt = integer(env.get("attempt"), headers.get("x-loom-attempt"));
    this.attempt = attempt == null ? 1 : attempt;
    // The envelope's key is signed with the body; the header is not (a replay could change it).
    this.idempotencyKey = first(str(env.get("idempotency_key")), headers.get("idempotency-key"));
    this.inputs = env.get("inputs") instanceof Map<?, ?> m ? (Map<String, Object>) m : new LinkedHashMap<>();
    this.upstream = env.get("upstream") instanceof Map<?, ?> m ? (Map<String, Object>) m : new LinkedHashMap<>();
    this.item = env.get("item");
    this.index = integer(env.get("index"), null);
    this.callbackUrl = first(str(callback.get("url")), headers.get("x-loom-callback-url"));
    this.heartbeatUrl = first(str(callback.get("heartbeat_url")), headers.get("x-loom-heartbeat-url"));
    this.body = body;
    this.isEnvelope = isEnvelope;
    this.headers = headers;
    this.payload = env.get("payload");
    this.token = token;
    this.deliveries = deliveries;
  }

  /** Thrown when a delivery's body is not JSON. */
  public static final class BadRequest extends Exception {
    BadRequest(String message) {
      super(message);
    }
  }

  /** Parse an HTTP delivery; {@code headers} are lower-cased names to their first value. */
  @SuppressWarnings("unchecked")
  public static TaskRequest fromHttp(byte[] raw, Map<String, String> headers) throws BadRequest {
    String text = new String(raw, StandardCharsets.UTF_8);
    Object data = null;
    if (!text.isBlank()) {
      try {
        data = Json.parse(text);
      } catch (Json.JsonException e) {
        throw new BadRequest("the request body is not JSON: " + e.getMessage());
      }
    }
    boolean envelope = data instanceof Map<?, ?> m && m.containsKey("run_id") && m.containsKey("step_id");
    Map<String, Object> env = envelope ? (Map<String, Object>) data : Map.of();
    return new TaskRequest(env, data, envelope, headers, null, 1);
  }

  /** A polled task ({@code {token, queue, task, deliveries, envelope}}). */
  @SuppressWarnings("unchecked")
  static TaskRequest fromPolled(Map<String, Object> task) {
    Map<String, Object> env = task.get("envelope") instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
    Integer deliveries = integer(task.get("deliveries"), null);
    return new TaskRequest(env, env, true, Map.of(), str(task.get("token")), deliveries == null ? 1 : deliveries);
  }

  /** True when the server waits for a callback (the step is {@code mode: async}). */
  public boolean isAsync() {
    return callbackUrl != null;
  }

  /** Add a line returned to the server with the result. */
  public void log(String line) {
    logs.add(line);
  }

  public List<String> logs() {
    synchronized (logs) {
      return new ArrayList<>(logs);
    }
  }

  /** The output of an upstream step, or null. */
  public Object outputOf(String stepId) {
    return upstream.get(stepId) instanceof Map<?, ?> m ? m.get("output") : null;
  }

  public long inputLong(String name, long fallback) {
    Object v = inputs.get(name);
    if (v instanceof Number n) return n.longValue();
    if (v instanceof String s) {
      try {
        return Long.parseLong(s.trim());
      } catch (NumberFormatException e) {
        return fallback;
      }
    }
    return fallback;
  }

  public double inputDouble(String name, double fallback) {
    Object v = inputs.get(name);
    if (v instanceof Number n) return n.doubleValue();
    if (v instanceof String s) {
      try {
        return Double.parseDouble(s.trim());
      } catch (NumberFormatException e) {
        return fallback;
      }
    }
    return fallback;
  }

  public String inputString(String name, String fallback) {
    Object v = inputs.get(name);
    return v == null ? fallback : String.valueOf(v);
  }

  static String str(Object v) {
    return v == null ? null : String.valueOf(v);
  }

  static String first(String a, String b) {
    return a != null && !a.isEmpty() ? a : (b != null && !b.isEmpty() ? b : null);
  }

  static Integer integer(Object v, String fallback) {
    Object candidate = v != null ? v : fallback;
    if (candidate instanceof Number n) return n.intValue();
    if (candidate instanceof String s) {
      try {
        return Integer.parseInt(s.trim());
      } catch (NumberFormatException e) {
        return null;
      }
    }
    return null;
  }
}
