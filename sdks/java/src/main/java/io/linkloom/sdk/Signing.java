package io.linkloom.sdk;

import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The v1 signatures of the task protocol (docs/protocol.md, section 4):
 * {@code X-Loom-Timestamp: <unix seconds>} and
 * {@code X-Loom-Signature: v1=<hex hmac-sha256 of "<ts>." + body>}, exactly one entry, 300 s window.
 */
public final class Signing {
  public static final String TIMESTAMP_HEADER = "X-Loom-Timestamp";
  public static final String SIGNATURE_HEADER = "X-Loom-Signature";
  public static final long DEFAULT_TOLERANCE_SECONDS = 300;
  private static final Pattern SIGNATURE = Pattern.compile("^v1=([0-9a-f]{64})$");
  private static final Pattern SECONDS = Pattern.compile("^[0-9]{1,15}$");

  private Signing() {}

  /** The request's signature is missing, malformed, wrong or outside the window. */
  public static final class SignatureException extends Exception {
    public SignatureException(String reason) {
      super(reason);
    }
  }

  /** The headers that sign {@code body} at {@code epochSeconds}. */
  public static Map<String, String> sign(String key, byte[] body, long epochSeconds) {
    String ts = Long.toString(epochSeconds);
    return Map.of(TIMESTAMP_HEADER, ts, SIGNATURE_HEADER, "v1=" + mac(key, ts, body));
  }

  public static Map<String, String> sign(String key, byte[] body) {
    return sign(key, body, System.currentTimeMillis() / 1000);
  }

  /**
   * Check a v1 signature over the raw body; {@code headers} maps lower-cased names to values.
   * Returns the timestamp; the exception says what is wrong, never the right value.
   */
  public static long verify(String key, byte[] body, Map<String, List<String>> headers, long toleranceSeconds, long nowSeconds)
      throws SignatureException {
    List<String> stamps = headers.getOrDefault(TIMESTAMP_HEADER.toLowerCase(), List.of());
    List<String> sigs = headers.getOrDefault(SIGNATURE_HEADER.toLowerCase(), List.of());
    if (stamps.size() != 1 || sigs.size() != 1 || stamps.get(0).isEmpty() || sigs.get(0).isEmpty()) {
      throw new SignatureException("missing " + TIMESTAMP_HEADER + " or " + SIGNATURE_HEADER + " header");
    }
    String ts = stamps.get(0).trim();
    if (!SECONDS.matcher(ts).matches()) throw new SignatureException(TIMESTAMP_HEADER + " must be whole unix seconds");
    long skew = Math.abs(nowSeconds - Long.parseLong(ts));
    if (skew > toleranceSeconds) {
      throw new SignatureException("signature timestamp is " + skew + "s away from now (allowed: " + toleranceSeconds
          + "s); check the clocks or re-sign");
    }
    Matcher match = SIGNATURE.matcher(sigs.get(0).trim());
    if (!match.matches()) throw new SignatureException(SIGNATURE_HEADER + " must be exactly one v1=<64 hex digits> entry");
    byte[] expected = HexFormat.of().parseHex(mac(key, ts, body));
    byte[] given = HexFormat.of().parseHex(match.group(1));
    if (!MessageDigest.isEqual(expected, given)) throw new SignatureException("signature does not match the body");
    return Long.parseLong(ts);
  }

  static String mac(String key, String ts, byte[] body) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
      mac.update((ts + ".").getBytes(StandardCharsets.UTF_8));
      mac.update(body);
      return HexFormat.of().formatHex(mac.doFinal());
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException("HmacSHA256 is not available", e);
    }
  }
}
