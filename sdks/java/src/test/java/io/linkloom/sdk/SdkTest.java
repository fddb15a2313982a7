package io.linkloom.sdk;

import com.sun.net.httpserver.HttpServer;
import io.linkloom.sdk.IdempotencyStore.Reply;
import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Java SDK's tests, with a minimal runner (JDK only): every public static void method named
 * test* runs; the last line is "N passed, M failed"; any failure ends in an AssertionError.
 */
public final class SdkTest {
  static final String KEY = "test-key";

  public static void main(String[] args) throws Exception {
    int passed = 0, failed = 0;
    for (Method m : SdkTest.class.getDeclaredMethods()) {
      if (!m.getName().startsWith("test")) continue;
      try {
        m.invoke(null);
        passed++;
        System.out.println("ok   " + m.getName());
      } catch (java.lang.reflect.InvocationTargetException e) {
        failed++;
        System.out.println("FAIL " + m.getName() + ": " + e.getCause());
        e.getCause().printStackTrace(System.out);
      }
    }
    System.out.println(passed + " passed, " + failed + " failed");
    if (failed > 0) throw new AssertionError(failed + " failed"); // exit code 1, also under Maven
  }

  static void check(boolean condition, String what) {
    if (!condition) throw new AssertionError(what);
  }

  static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static Map<String, List<String>> headers(Map<String, String> flat) {
    Map<String, List<String>> out = new LinkedHashMap<>();
    flat.forEach((k, v) -> out.put(k.toLowerCase(), List.of(v)));
    return out;
  }

  // The test vectors of docs/protocol.md, section 4.
  public static void testSignMatchesTheProtocolTestVectors() {
    check(Signing.sign("example-key", bytes("{\"a\":1}"), 1700000000L).get(Signing.SIGNATURE_HEADER)
        .equals("v1=25e079f0ade4766fd01176738fe281c3bc05c399d51f7ee8865b86d293159742"), "vector 1");
    check(Signing.sign("example-key", bytes(""), 1700000000L).get(Signing.SIGNATURE_HEADER)
        .equals("v1=feedb4b16dc2e92285c54c96b90a6a309a7bc23401442e1695eca1af5540f231"), "vector 2");
  }

  public static void testVerifyRefusesWhatTheProtocolRefuses() throws Exception {
    Map<String, String> ok = Signing.sign(KEY, bytes("body"), 1700000000L);
    check(Signing.verify(KEY, bytes("body"), headers(ok), 300, 1700000299L) == 1700000000L, "valid");
    String sig = ok.get(Signing.SIGNATURE_HEADER);
    Object[][] cases = {
      {Map.of(), "body", 1700000000L, "missing"},
      {ok, "body", 1700000301L, "away from now"},
      {ok, "body", 1699999699L, "away from now"},
      {ok, "bodx", 1700000000L, "does not match"},
      {Map.of(Signing.TIMESTAMP_HEADER, "1700000000", Signing.SIGNATURE_HEADER, sig + "," + sig), "body", 1700000000L, "exactly one"},
      {Map.of(Signing.TIMESTAMP_HEADER, "1700000000", Signing.SIGNATURE_HEADER, sig.replace("v1=", "v0=")), "body", 1700000000L, "exactly one"},
      {Map.of(Signing.TIMESTAMP_HEADER, "1700000000.5", Signing.SIGNATURE_HEADER, sig), "body", 1700000000L, "whole unix seconds"},
    };
    for (Object[] c : cases) {
      @SuppressWarnings("unchecked")
      Map<String, String> h = (Map<String, String>) c[0];
      try {
        Signing.verify(KEY, bytes((String) c[1]), headers(h), 300, (Long) c[2]);
        throw new AssertionError("accepted: " + c[3]);
      } catch (Signing.SignatureException e) {
        check(e.getMessage().contains((String) c[3]), c[3] + " → " + e.getMessage());
      }
    }
  }

  public static void testJsonRoundTripsAndRefusesGarbage() {
    String text = "{\"a\":[1,2.5,true,null,\"x\\n\\u00e9\"],\"b\":{\"c\":-3},\"big\":12345678901234567890}";
    Object parsed = Json.parse(text);
    check(Json.write(parsed).equals(text.replace("\\u00e9", "é")), Json.write(parsed));
    for (String bad : List.of("{", "[1,]", "tru", "{\"a\" 1}", "1 2", "\"\\x\"")) {
      try {
        Json.parse(bad);
        throw new AssertionError("parsed " + bad);
      } catch (Json.JsonException expected) {
        // refused
      }
    }
  }

  static Reply deliver(TaskDispatcher d, TaskDispatcher.Handler h, String step, boolean tamper) {
    String body = "{\"run_id\":\"r1\",\"flow_id\":\"f\",\"flow_version\":2,\"step_id\":\"" + step
        + "\",\"attempt\":1,\"inputs\":{\"n\":3},\"upstream\":{\"up\":{\"output\":5}},\"item\":null,\"index\":null,\"callback\":null}";
    Map<String, String> h1 = new LinkedHashMap<>(Signing.sign(KEY, bytes(body)));
    h1.put("Idempotency-Key", "r1:" + step);
    return d.dispatch(h, false, bytes(tamper ? body.replace("3", "4") : body), headers(h1));
  }

  @SuppressWarnings("unchecked")
  public static void testDispatcherMapsOutcomesAndDeduplicatesSuccess() {
    TaskDispatcher d = new TaskDispatcher(KEY, new IdempotencyStore.InMemory());
    AtomicInteger runs = new AtomicInteger();
    TaskDispatcher.Handler ok = task -> {
      runs.incrementAndGet();
      task.log("ran");
      return Map.of("double", task.inputLong("n", 0) * 2, "up", task.outputOf("up"));
    };
    Reply first = deliver(d, ok, "s", false);
    check(first.status() == 200, "status");
    Map<String, Object> body = (Map<String, Object>) first.body();
    check(body.get("status").equals("SUCCESS") && ((Map<String, Object>) body.get("output")).get("double").equals(6L), body.toString());
    Reply again = deliver(d, ok, "s", false);
    check(runs.get() == 1 && "true".equals(again.headers().get("X-Loom-Idempotent-Replay")), "replay");
    Reply tampered = deliver(d, ok, "t", true);
    check(tampered.status() == 401 && ((Map<String, Object>) tampered.body()).get("code").equals("invalid_signature"), "401");
    AtomicInteger fails = new AtomicInteger();
    TaskDispatcher.Handler failing = task -> {
      fails.incrementAndGet();
      return TaskResult.failed("busy", true);
    };
    deliver(d, failing, "f", false);
    Reply failed = deliver(d, failing, "f", false);
    check(fails.get() == 2 && Boolean.TRUE.equals(((Map<String, Object>) failed.body()).get("retryable")), "FAILED not stored");
    Reply later = deliver(d, task -> { throw new RetryableException("locked", 2L); }, "l", false);
    check(later.status() == 503 && "2".equals(later.headers().get("Retry-After")), "503");
    Reply broken = deliver(d, task -> { throw new IllegalStateException("no disk"); }, "b", false);
    check(((Map<String, Object>) broken.body()).get("error").equals("IllegalStateException: no disk"), broken.body().toString());
  }

  public static class Tasks {
    final List<String> seen = new ArrayList<>();

    @Task("double")
    public Object doubleIt(TaskRequest task) {
      seen.add(task.stepId);
      return Map.of("double", task.inputLong("n", 0) * 2);
    }
  }

  public static void testTaskAnnotatedMethodsAreServedOverHttp() throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    Tasks tasks = new Tasks();
    server.createContext("/api/tasks/", new TaskServer(new TaskDispatcher(KEY, null), "/api/tasks").register(tasks));
    server.start();
    try {
      String body = "{\"run_id\":\"r\",\"step_id\":\"s\",\"inputs\":{\"n\":21}}";
      HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/api/tasks/double"))
          .POST(HttpRequest.BodyPublishers.ofString(body));
      Signing.sign(KEY, bytes(body)).forEach(request::header);
      HttpResponse<String> answer = HttpClient.newHttpClient().send(request.build(), HttpResponse.BodyHandlers.ofString());
      check(answer.statusCode() == 200, "status " + answer.statusCode());
      check(answer.body().equals("{\"status\":\"SUCCESS\",\"output\":{\"double\":42},\"logs\":[]}"), answer.body());
      check(tasks.seen.equals(List.of("s")), tasks.seen.toString());
    } finally {
      server.stop(0);
    }
  }
}
