package io.linkloom.sdk;

/** Throw from a handler when the work may succeed later: the reply is 503 with Retry-After. */
public class RetryableException extends Exception {
  private final Long retryAfterSeconds;

  public RetryableException(String message, Long retryAfterSeconds) {
    super(message);
    this.retryAfterSeconds = retryAfterSeconds;
  }

  public RetryableException(String message) {
    this(message, null);
  }

  /** Seconds for the Retry-After header, or null for none. */
  public Long retryAfterSeconds() {
    return retryAfterSeconds;
  }
}
