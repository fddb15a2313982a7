package io.linkloom.sdk;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A result with full control of the reply; a plain returned value means SUCCESS. */
public final class TaskResult {
  public final String status;
  public final Object output;
  public final String error;
  public final List<String> logs;
  public final boolean retryable;

  private TaskResult(String status, Object output, String error, List<String> logs, boolean retryable) {
    this.status = status;
    this.output = output;
    this.error = error;
    this.logs = logs;
    this.retryable = retryable;
  }

  public static TaskResult success(Object output) {
    return new TaskResult("SUCCESS", output, null, List.of(), false);
  }

  /** A failure; {@code retryable} lets the server retry it under the step's policy. */
  public static TaskResult failed(String error, boolean retryable) {
    return new TaskResult("FAILED", null, error, List.of(), retryable);
  }

  public static TaskResult failed(String error) {
    return failed(error, false);
  }

  /** A handler's return value as a result. */
  public static TaskResult of(Object value) {
    return value instanceof TaskResult r ? r : success(value);
  }

  /** The JSON reply: the request's log lines first, then the result's own. */
  public Map<String, Object> toWire(List<String> extraLogs) {
    Map<String, Object> wire = new LinkedHashMap<>();
    wire.put("status", status);
    wire.put("output", output);
    List<String> all = new ArrayList<>(extraLogs);
    all.addAll(logs);
    wire.put("logs", all);
    if (error != null) wire.put("error", error);
    if (retryable && status.equals("FAILED")) wire.put("retryable", true);
    return wire;
  }
}
