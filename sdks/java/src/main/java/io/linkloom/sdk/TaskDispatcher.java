package io.linkloom.sdk;

import io.linkloom.sdk.IdempotencyStore.Reply;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Framework-neutral handling of task deliveries (docs/protocol.md): verify (401), parse (400),
 * de-duplicate by Idempotency-Key (a stored SUCCESS is repeated; a key in progress gets 503), run
 * the handler and map its outcome: a value → 200 SUCCESS; a {@link TaskResult} → its status; a
 * {@link RetryableException} → 503 with Retry-After; any other exception → 200 FAILED. An async
 * handler on a {@code mode: async} step answers 202 and calls back later. Only SUCCESS is stored.
 */
public final class TaskDispatcher {
  /** A task handler: takes the request, returns the output or a {@link TaskResult}. */
  @FunctionalInterface
  public interface Handler {
    Object handle(TaskRequest task) throws Exception;
  }

  private final String signingKey;
  private final boolean verify;
  private final IdempotencyStore idempotency;
  private final Duration heartbeat;
  private final CallbackSender callbacks;
  private final ExecutorService background = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "loom-async-task");
    t.setDaemon(true);
    return t;
  });
  private final long toleranceSeconds = Signing.DEFAULT_TOLERANCE_SECONDS;

  /**
   * @param signingKey the server's security.signing_key (null only with {@code verify=false},
   *     for local development)
   * @param idempotency a store, or null to run every delivery
   * @param heartbeat how often background work heartbeats (keep it well under heartbeat_timeout)
   */
  public TaskDispatcher(String signingKey, boolean verify, IdempotencyStore idempotency, Duration heartbeat) {
    if (verify && (signingKey == null || signingKey.isEmpty())) {
      throw new IllegalArgumentException(
          "pass the signing key (the server's LOOM_SECURITY__SIGNING_KEY), or verify=false for local development only");
    }
    if (!verify) System.err.println("loom_signature_verification_disabled: accepting unsigned tasks (development only)");
    this.signingKey = signingKey;
    this.verify = verify;
    this.idempotency = idempotency;
    this.heartbeat = heartbeat;
    this.callbacks = new CallbackSender(signingKey == null ? "" : signingKey);
  }

  public TaskDispatcher(String signingKey, IdempotencyStore idempotency) {
    this(signingKey, true, idempotency, Duration.ofSeconds(10));
  }

  /** Handle one delivery: the raw body and its headers (lower-cased names, all values). */
  public Reply dispatch(Handler handler, boolean async, byte[] body, Map<String, List<String>> headers) {
    if (verify) {
      try {
        Signing.verify(signingKey, body, headers, toleranceSeconds, System.currentTimeMillis() / 1000);
      } catch (Signing.SignatureException e) {
        System.err.println("loom_task_rejected: " + e.getMessage());
        return error(401, "invalid_signature", "invalid signature: " + e.getMessage());
      }
    }
    Map<String, String> first = new LinkedHashMap<>();
    headers.forEach((k, v) -> { if (!v.isEmpty()) first.put(k.toLowerCase(), v.get(0)); });
    TaskRequest task;
    try {
      task = TaskRequest.fromHttp(body, first);
    } catch (TaskRequest.BadRequest e) {
      return error(400, "bad_request", e.getMessage());
    }
    String key = task.idempotencyKey;
    if (idempotency != null && key != null) {
      Reply stored = idempotency.get(key);
      if (stored != null) return replay(stored);
      if (!idempotency.claim(key, async ? Duration.ofHours(1) : Duration.ofMinutes(5))) {
        Reply finished = idempotency.get(key);
        if (finished != null) return replay(finished);
        Reply busy = error(503, "in_progress",
            "a delivery with Idempotency-Key '" + key + "' is still being processed; retry later");
        return new Reply(503, busy.body(), Map.of("Retry-After", "5"));
      }
    }
    if (async && task.isAsync()) {
      background.submit(() -> completeLater(task, handler));
      return new Reply(202, Map.of("status", "ACCEPTED"), Map.of());
    }
    try {
      return finish(task, TaskResult.of(handler.handle(task)));
    } catch (RetryableException e) {
      forget(task);
      Map<String, String> h = e.retryAfterSeconds() == null ? Map.of() : Map.of("Retry-After", String.valueOf(e.retryAfterSeconds()));
      return new Reply(503, TaskResult.failed(e.getMessage(), true).toWire(task.logs()), h);
    } catch (Exception e) {
      return finish(task, failure(task, e));
    }
  }

  /** Wait up to {@code seconds} for background work (async steps): for tests and shutdown. */
  public void drain(long seconds) throws InterruptedException {
    background.shutdown();
    background.awaitTermination(seconds, TimeUnit.SECONDS);
  }

  private Reply finish(TaskRequest task, TaskResult result) {
    Reply reply = new Reply(200, result.toWire(task.logs()), Map.of());
    remember(task, result, reply);
    return reply;
  }

  private void remember(TaskRequest task, TaskResult result, Reply reply) {
    if (idempotency == null || task.idempotencyKey == null) return;
    if (result.status.equals("SUCCESS")) idempotency.put(task.idempotencyKey, reply);
    else idempotency.release(task.idempotencyKey);
  }

  private void forget(TaskRequest task) {
    if (idempotency != null && task.idempotencyKey != null) idempotency.release(task.idempotencyKey);
  }

  private void completeLater(TaskRequest task, Handler handler) {
    Thread beats = null;
    if (task.heartbeatUrl != null) {
      beats = new Thread(() -> {
        try {
          // The first one at once: a JVM's first HTTP request is slow, and it must not be late.
          while (true) {
            CallbackSender.Outcome outcome = callbacks.heartbeat(task.heartbeatUrl);
            if (outcome == CallbackSender.Outcome.ALREADY_COMPLETED || outcome == CallbackSender.Outcome.REJECTED) return;
            Thread.sleep(heartbeat.toMillis());
          }
        } catch (InterruptedException e) {
          // the work is done
        }
      }, "loom-heartbeats");
      beats.setDaemon(true);
      beats.start();
    }
    TaskResult result;
    try {
      result = TaskResult.of(handler.handle(task));
    } catch (RetryableException e) {
      result = TaskResult.failed(e.getMessage(), true);
    } catch (Exception e) {
      result = failure(task, e);
    }
    if (beats != null) {
      beats.interrupt();
      try {
        beats.join(); // no heartbeat after the result
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    CallbackSender.Outcome outcome = callbacks.complete(task.callbackUrl, result, task.logs());
    if (outcome == CallbackSender.Outcome.DELIVERED || outcome == CallbackSender.Outcome.ALREADY_COMPLETED) {
      remember(task, result, new Reply(200, result.toWire(task.logs()), Map.of()));
    } else {
      forget(task);
    }
  }

  static TaskResult failure(TaskRequest task, Exception e) {
    Throwable cause = e instanceof java.lang.reflect.InvocationTargetException ite && ite.getCause() != null ? ite.getCause() : e;
    System.err.println("loom_task_failed: step " + task.stepId + " of run " + task.runId + ": " + cause);
    String message = cause.getMessage() == null ? "no message" : cause.getMessage();
    return TaskResult.failed(cause.getClass().getSimpleName() + ": " + message);
  }

  private static Reply replay(Reply stored) {
    Map<String, String> h = new LinkedHashMap<>(stored.headers());
    h.put("X-Loom-Idempotent-Replay", "true");
    return new Reply(stored.status(), stored.body(), h);
  }

  static Reply error(int status, String code, String message) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("status", "FAILED");
    body.put("error", message);
    body.put("code", code);
    return new Reply(status, body, Map.of());
  }
}
