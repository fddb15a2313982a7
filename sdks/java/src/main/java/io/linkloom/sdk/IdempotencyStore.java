package io.linkloom.sdk;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

/**
 * De-duplication by Idempotency-Key (docs/protocol.md, section 5). {@code claim} marks a key in
 * flight (false when a reply is stored or a live claim exists; a claim older than {@code ttl} is
 * abandoned); {@code put} stores the final reply and ends the claim (only SUCCESS replies are put);
 * {@code release} ends the claim; {@code get} returns the stored reply or null.
 */
public interface IdempotencyStore {
  Reply get(String key);

  boolean claim(String key, Duration ttl);

  void put(String key, Reply reply);

  void release(String key);

  /** An HTTP reply to the server. */
  record Reply(int status, Object body, Map<String, String> headers) {}

  /** Replies in memory for {@code retention} (7 days by default): tests, single processes. */
  final class InMemory implements IdempotencyStore {
    private final Duration retention;
    private final Map<String, Reply> done = new HashMap<>();
    private final Map<String, Long> storedAt = new HashMap<>();
    private final Map<String, Long> claims = new HashMap<>();

    public InMemory(Duration retention) {
      this.retention = retention;
    }

    public InMemory() {
      this(Duration.ofDays(7));
    }

    @Override
    public synchronized Reply get(String key) {
      Long at = storedAt.get(key);
      if (at == null) return null;
      if (at + retention.toMillis() < System.currentTimeMillis()) {
        done.remove(key);
        storedAt.remove(key);
        return null;
      }
      return done.get(key);
    }

    @Override
    public synchronized boolean claim(String key, Duration ttl) {
      if (get(key) != null) return false;
      Long until = claims.get(key);
      long now = System.currentTimeMillis();
      if (until != null && until > now) return false;
      claims.put(key, now + ttl.toMillis());
      return true;
    }

    @Override
    public synchronized void put(String key, Reply reply) {
      claims.remove(key);
      done.put(key, reply);
      storedAt.put(key, System.currentTimeMillis());
    }

    @Override
    public synchronized void release(String key) {
      claims.remove(key);
    }
  }
}
