package io.linkloom.sdk;

import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Benchmark of bench/bench_sdk.py: a TaskServer endpoint (signature check, parsing, idempotency
 * store, response mapping) against a plain HttpHandler that parses the same body with the same
 * JSON codec and writes the same answer, over real HTTP on 127.0.0.1 from 8 client threads.
 * {@code java -cp build/classes:build/test-classes io.linkloom.sdk.Bench [requests] [rounds]}.
 */
public final class Bench {
  static final String KEY = "bench-key";

  record Delivery(byte[] body, Map<String, String> headers) {}

  static List<Delivery> deliveries(int n, String prefix) {
    String run = prefix + "-" + System.nanoTime();
    List<Delivery> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      String body = "{\"run_id\":\"" + run + "\",\"flow_id\":\"bench\",\"flow_version\":1,\"step_id\":\"s" + i
          + "\",\"attempt\":1,\"idempotency_key\":\"" + run + ":s" + i + "\",\"inputs\":{\"n\":" + i
          + "},\"upstream\":{},\"item\":null,\"index\":null,\"callback\":null}";
      byte[] raw = body.getBytes(StandardCharsets.UTF_8);
      Map<String, String> signed = Signing.sign(KEY, raw);
      out.add(new Delivery(raw, Map.of(
          Signing.TIMESTAMP_HEADER, signed.get(Signing.TIMESTAMP_HEADER),
          Signing.SIGNATURE_HEADER, signed.get(Signing.SIGNATURE_HEADER),
          "Idempotency-Key", run + ":s" + i, "Content-Type", "application/json")));
    }
    return out;
  }

  static double load(HttpClient client, String url, List<Delivery> items, ExecutorService pool) throws Exception {
    AtomicInteger next = new AtomicInteger();
    long started = System.nanoTime();
    List<Future<?>> workers = new ArrayList<>();
    for (int w = 0; w < 8; w++) {
      workers.add(pool.submit(() -> {
        for (int i = next.getAndIncrement(); i < items.size(); i = next.getAndIncrement()) {
          HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url))
              .POST(HttpRequest.BodyPublishers.ofByteArray(items.get(i).body()));
          items.get(i).headers().forEach(request::header);
          HttpResponse<byte[]> answer = client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
          if (answer.statusCode() != 200) throw new IllegalStateException("HTTP " + answer.statusCode());
        }
        return null;
      }));
    }
    for (Future<?> f : workers) f.get();
    return items.size() / ((System.nanoTime() - started) / 1e9);
  }

  public static void main(String[] args) throws Exception {
    // The JDK server writes headers and body apart; without TCP_NODELAY each answer waits for a
    // delayed ACK (~40 ms). Backends built on com.sun.net.httpserver should set it too.
    System.setProperty("sun.net.httpserver.nodelay", "true");
    int requests = args.length > 0 ? Integer.parseInt(args[0]) : 3000;
    int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 3;
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 256);
    server.createContext("/plain", exchange -> {
      try (exchange) {
        Map<?, ?> env = (Map<?, ?>) Json.parse(new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
        Object n = ((Map<?, ?>) env.get("inputs")).get("n");
        TaskServer.send(exchange, 200, Json.write(Map.of("status", "SUCCESS", "output", Map.of("n", n), "logs", List.of())), Map.of());
      }
    });
    TaskServer tasks = new TaskServer(new TaskDispatcher(KEY, new IdempotencyStore.InMemory()), "/api/tasks");
    tasks.task("task", false, task -> Map.of("n", task.inputs.get("n")));
    server.createContext("/api/tasks/", tasks);
    ExecutorService serverPool = Executors.newFixedThreadPool(8);
    server.setExecutor(serverPool);
    server.start();
    String base = "http://127.0.0.1:" + server.getAddress().getPort();
    ExecutorService clientPool = Executors.newFixedThreadPool(8);
    HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    load(client, base + "/plain", deliveries(1000, "warm"), clientPool); // JIT warm-up of both
    load(client, base + "/api/tasks/task", deliveries(1000, "warm"), clientPool);
    for (int round = 0; round < rounds; round++) {
      double plain = load(client, base + "/plain", deliveries(requests, "p" + round), clientPool);
      double sdk = load(client, base + "/api/tasks/task", deliveries(requests, "t" + round), clientPool);
      System.out.println("{\"plain_rps\":" + plain + ",\"sdk_rps\":" + sdk + "}");
    }
    server.stop(0);
    serverPool.shutdown();
    clientPool.shutdown();
  }
}
