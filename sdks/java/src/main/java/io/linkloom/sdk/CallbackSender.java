package io.linkloom.sdk;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * Signs and POSTs results and heartbeats of async steps (docs/protocol.md, section 2). Connection
 * errors, 429 and 5xx are retried with backoff, each try signed afresh; 409 stops (the attempt
 * already has its result or ended).
 */
public final class CallbackSender {
  /** What became of a callback or heartbeat. */
  public enum Outcome { DELIVERED, ALREADY_COMPLETED, REJECTED, GAVE_UP }

  private final String signingKey;
  private final int retries;
  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();

  public CallbackSender(String signingKey, int retries) {
    this.signingKey = signingKey;
    this.retries = retries;
  }

  public CallbackSender(String signingKey) {
    this(signingKey, 6);
  }

  /** POST the final result (a {@link TaskResult} or a plain output) to the callback URL. */
  public Outcome complete(String url, Object result, List<String> logs) {
    return post(url, Json.write(TaskResult.of(result).toWire(logs)), retries + 1);
  }

  /** POST one heartbeat, retried once (the next one comes anyway). */
  public Outcome heartbeat(String url) {
    return post(url, "{}", 2);
  }

  private Outcome post(String url, String body, int attempts) {
    byte[] raw = body.getBytes(StandardCharsets.UTF_8);
    long delay = 500;
    for (int attempt = 1; attempt <= attempts; attempt++) {
      try {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(10))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofByteArray(raw));
        for (Map.Entry<String, String> h : Signing.sign(signingKey, raw).entrySet()) request.header(h.getKey(), h.getValue());
        int status = http.send(request.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
        if (status < 300) return Outcome.DELIVERED;
        if (status == 409) return Outcome.ALREADY_COMPLETED;
        if (status < 500 && status != 429) {
          System.err.println("loom_callback_rejected: HTTP " + status);
          return Outcome.REJECTED;
        }
      } catch (java.io.IOException e) {
        System.err.println("loom_callback_connection_error: " + e + " (try " + attempt + "/" + attempts + ")");
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return Outcome.GAVE_UP;
      }
      if (attempt < attempts) {
        try {
          Thread.sleep(delay);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return Outcome.GAVE_UP;
        }
        delay = Math.min(delay * 2, 10_000);
      }
    }
    return Outcome.GAVE_UP;
  }
}
