package example;

import com.sun.net.httpserver.HttpServer;
import io.linkloom.sdk.IdempotencyStore;
import io.linkloom.sdk.Json;
import io.linkloom.sdk.RetryableException;
import io.linkloom.sdk.Task;
import io.linkloom.sdk.TaskDispatcher;
import io.linkloom.sdk.TaskRequest;
import io.linkloom.sdk.TaskResult;
import io.linkloom.sdk.TaskServer;
import io.linkloom.sdk.Worker;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;

/**
 * The Link Loom example user backend and pull worker in Java (JDK 17 + the Java SDK).
 *
 * <pre>
 * bash build.sh && java -cp build/classes:../../../sdks/java/build/linkloom-sdk.jar example.Backend serve --port 8081
 * java -cp … example.Backend worker   # LOOM_SERVER_URL, LOOM_TOKEN, LOOM_WORKER_QUEUES, LOOM_WORKER_ID
 * </pre>
 *
 * It serves the daily-report flow's tasks and the endpoints of the SDK conformance suite
 * (tests/conformance/README.md). The signing key comes from LOOM_SECURITY__SIGNING_KEY.
 */
public final class Backend {
  static final String DEV_SIGNING_KEY = "dev-only-signing-key-change-me";
  final Map<String, Integer> calls = new LinkedHashMap<>();
  final List<Map<String, Object>> effects = new ArrayList<>();
  final Map<String, Integer> deliveries = new LinkedHashMap<>();
  String workerId = "";

  synchronized void count(String name) {
    calls.merge(name, 1, Integer::sum);
  }

  synchronized Map<String, Object> record(String kind, Map<String, Object> fields) {
    Map<String, Object> effect = new LinkedHashMap<>();
    effect.put("kind", kind);
    effect.put("seq", effects.size() + 1);
    effect.putAll(fields);
    effects.add(effect);
    return effect;
  }

  // docs:start java-tasks
  @Task("fetch-data")
  public Map<String, Object> fetchData(TaskRequest task) {
    count("fetch-data");
    long n = task.inputLong("count", 20);
    List<Map<String, Object>> records = new ArrayList<>();
    for (long i = 0; i < n; i++) records.add(Map.of("id", i, "value", i * 10, "valid", i % 20 != 0));
    task.log("Fetched " + n + " records");
    return Map.of("records", records, "count", n);
  }

  @Task("process")
  public Map<String, Object> process(TaskRequest task) {
    count("process");
    List<?> records = (List<?>) ((Map<?, ?>) task.outputOf("fetch_data")).get("records");
    long valid = records.stream().filter(r -> Boolean.TRUE.equals(((Map<?, ?>) r).get("valid"))).count();
    task.log("Processed data, " + valid + " valid");
    return Map.of("total", records.size(), "valid", valid, "invalid", records.size() - valid);
  }
  // docs:end java-tasks

  @Task("send-email")
  public Map<String, Object> sendEmail(TaskRequest task) {
    count("send-email");
    String to = task.inputString("to", "admin@example.com");
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("to", to);
    fields.put("key", task.idempotencyKey);
    record("email", fields);
    task.log("Email sent to " + to);
    return Map.of("sent", true, "to", to);
  }

  @Task("echo")
  public Map<String, Object> echo(TaskRequest task) {
    count("echo");
    Map<String, Object> headers = new LinkedHashMap<>();
    task.headers.forEach((k, v) -> { if (k.startsWith("x-loom-")) headers.put(k, v); });
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("run_id", task.runId);
    out.put("flow_id", task.flowId);
    out.put("flow_version", task.flowVersion);
    out.put("step_id", task.stepId);
    out.put("attempt", task.attempt);
    out.put("idempotency_key", task.idempotencyKey);
    out.put("inputs", task.inputs);
    out.put("upstream", task.upstream);
    out.put("item", task.item);
    out.put("index", task.index);
    out.put("body", task.isEnvelope ? null : task.body);
    out.put("headers", headers);
    return out;
  }

  @Task("charge")
  public Map<String, Object> charge(TaskRequest task) {
    count("charge");
    Map<?, ?> source = task.isEnvelope ? task.inputs : (task.body instanceof Map<?, ?> m ? m : Map.of());
    Object amount = source.containsKey("amount") ? source.get("amount") : 10L;
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("key", task.idempotencyKey);
    fields.put("amount", amount);
    fields.put("run", task.runId);
    Map<String, Object> effect = record("charge", fields);
    task.log("Charged " + amount);
    return Map.of("charge_id", "ch_" + effect.get("seq"), "amount", amount);
  }

  // docs:start java-failures
  @Task("fail")
  public TaskResult fail(TaskRequest task) {
    count("fail");
    record("fail", Map.of("key", task.idempotencyKey, "attempt", task.attempt));
    boolean retryable = Boolean.TRUE.equals(task.inputs.get("retryable"));
    return TaskResult.failed(task.inputString("error", "the example backend failed"), retryable);
  }

  @Task("flaky")
  public Map<String, Object> flaky(TaskRequest task) throws RetryableException {
    count("flaky");
    int delivery;
    synchronized (this) {
      delivery = deliveries.merge(task.idempotencyKey, 1, Integer::sum);
    }
    if (delivery <= task.inputLong("failures", 2)) {
      throw new RetryableException("flaky failure " + delivery, 0L); // 503 + Retry-After: 0
    }
    task.log("Succeeded on delivery " + delivery);
    return Map.of("deliveries", delivery);
  }
  // docs:end java-failures

  // docs:start java-async
  @Task(value = "slow-report", async = true) // mode: async → 202 now, heartbeats, then the callback
  public Map<String, Object> slowReport(TaskRequest task) throws InterruptedException {
    count("slow-report");
    double seconds = task.inputDouble("seconds", 2);
    long pages = Math.max(1, task.inputLong("pages", 3));
    for (long page = 1; page <= pages; page++) {
      Thread.sleep((long) (seconds * 1000 / pages));
      task.log("Rendered page " + page + "/" + pages);
    }
    return Map.of("report", "report-" + task.runId, "pages", pages);
  }
  // docs:end java-async

  /** A pull-worker task: the payload is {"n", "seconds"}. */
  @Task("square")
  public Map<String, Object> square(TaskRequest job) throws InterruptedException {
    System.out.println("task started key=" + job.idempotencyKey + " deliveries=" + job.deliveries);
    System.out.flush();
    Map<?, ?> payload = job.payload instanceof Map<?, ?> m ? m : Map.of();
    Thread.sleep((long) (Double.parseDouble(String.valueOf(payload.get("seconds"))) * 1000));
    long n = Long.parseLong(String.valueOf(payload.get("n")));
    job.log("squared " + n);
    return Map.of("square", n * n, "deliveries", job.deliveries, "worker", workerId);
  }

  static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  public static void main(String[] args) throws Exception {
    if (args.length == 0 || !(args[0].equals("serve") || args[0].equals("worker"))) {
      System.err.println("usage: example.Backend serve [--port 8081] | worker");
      System.exit(2);
    }
    Backend backend = new Backend();
    if (args[0].equals("worker")) {
      worker(backend);
      return;
    }
    int port = args.length > 2 && args[1].equals("--port") ? Integer.parseInt(args[2]) : 8081;
    double heartbeat = Double.parseDouble(env("LOOM_EXAMPLE_HEARTBEAT_SECONDS", "1"));
    // docs:start java-server
    System.setProperty("sun.net.httpserver.nodelay", "true"); // else ~40 ms per answer (delayed ACK)
    TaskDispatcher dispatcher = new TaskDispatcher(
        env("LOOM_SECURITY__SIGNING_KEY", DEV_SIGNING_KEY), true,
        new IdempotencyStore.InMemory(), Duration.ofMillis((long) (heartbeat * 1000)));
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 128);
    server.createContext("/api/tasks/", new TaskServer(dispatcher, "/api/tasks").register(backend));
    // docs:end java-server
    server.createContext("/stats", exchange -> {
      synchronized (backend) {
        TaskServer.send(exchange, 200, Json.write(Map.of("calls", backend.calls)), Map.of());
      }
    });
    server.createContext("/effects", exchange -> {
      synchronized (backend) {
        TaskServer.send(exchange, 200, Json.write(Map.of("effects", backend.effects)), Map.of());
      }
    });
    server.createContext("/healthz", exchange -> TaskServer.send(exchange, 200, "{\"status\":\"ok\"}", Map.of()));
    server.setExecutor(Executors.newFixedThreadPool(16));
    server.start();
    System.out.println("example backend (Java) listening on http://127.0.0.1:" + port);
  }

  static void worker(Backend backend) throws Exception {
    // docs:start java-worker
    Worker worker = new Worker(
        env("LOOM_SERVER_URL", "http://127.0.0.1:8080"), System.getenv("LOOM_TOKEN"),
        Arrays.asList(env("LOOM_WORKER_QUEUES", "reports").split(",")), System.getenv("LOOM_WORKER_ID"),
        Integer.parseInt(env("LOOM_WORKER_CONCURRENCY", "4")));
    backend.workerId = worker.id();
    worker.register(backend); // the same @Task methods, now pulled from the queues
    Thread main = Thread.currentThread();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      worker.stop(); // SIGTERM: running tasks report, then the worker deregisters
      try {
        main.join(30_000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }));
    worker.run();
    // docs:end java-worker
  }
}
