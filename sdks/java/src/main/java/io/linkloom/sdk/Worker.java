package io.linkloom.sdk;

import java.net.InetAddress;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

/**
 * A pull-mode worker for {@code type: task} steps (docs/protocol.md, section 3): registers,
 * long-polls its queues, runs the {@link Task} method named by each task, heartbeats while tasks
 * run, reports each result; {@link #stop()} lets running tasks report, then deregisters. A task
 * whose worker died is handed out again with the same idempotency key ({@code deliveries} > 1).
 */
public final class Worker {
  private final String api;
  private final String token;
  private final List<String> queues;
  private final String id;
  private final int concurrency;
  private final Map<String, TaskServer.Route> handlers = new LinkedHashMap<>();
  private final Map<String, Boolean> inflight = new ConcurrentHashMap<>();
  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
  private volatile boolean stopping;
  private volatile long heartbeatMillis = 10_000;

  public Worker(String serverUrl, String token, List<String> queues, String workerId, int concurrency) {
    if (queues.isEmpty()) throw new IllegalArgumentException("a worker needs at least one queue");
    this.api = serverUrl.replaceAll("/+$", "") + "/api/v1";
    this.token = token;
    this.queues = List.copyOf(queues);
    this.id = workerId != null && !workerId.isEmpty() ? workerId : host() + "-" + UUID.randomUUID().toString().substring(0, 8);
    this.concurrency = Math.max(1, concurrency);
  }

  public String id() {
    return id;
  }

  /** Run every {@link Task} method of {@code tasks} for tasks of that name. */
  public Worker register(Object tasks) {
    handlers.putAll(TaskServer.routesOf(tasks));
    return this;
  }

  /** Stop polling; running tasks finish and report, then {@link #run()} returns. */
  public void stop() {
    stopping = true;
  }

  /** Register, then poll and run tasks until {@link #stop()}. */
  public void run() throws InterruptedException {
    register();
    ExecutorService pool = Executors.newFixedThreadPool(concurrency);
    Semaphore slots = new Semaphore(concurrency);
    Thread beats = new Thread(this::heartbeats, "loom-worker-heartbeats");
    beats.setDaemon(true);
    beats.start();
    int failures = 0;
    while (!stopping) {
      int free = slots.availablePermits();
      if (free == 0) {
        if (slots.tryAcquire(200, TimeUnit.MILLISECONDS)) slots.release();
        continue;
      }
      Map<String, Object> body = new LinkedHashMap<>();
      body.put("worker_id", id);
      body.put("queues", queues);
      body.put("max_tasks", free);
      body.put("wait", 2);
      HttpResponse<String> answer;
      try {
        answer = call("POST", "/queues/poll", body);
      } catch (Exception e) {
        failures++;
        System.err.println("poll failed (" + e + "); retrying");
        Thread.sleep(backoff(failures));
        continue;
      }
      if (answer.statusCode() == 404) {
        register();
        continue;
      }
      if (answer.statusCode() != 200) {
        failures++;
        Thread.sleep(backoff(failures));
        continue;
      }
      failures = 0;
      @SuppressWarnings("unchecked")
      List<Object> tasks = (List<Object>) ((Map<String, Object>) Json.parse(answer.body())).get("tasks");
      for (Object item : tasks) {
        @SuppressWarnings("unchecked")
        Map<String, Object> data = (Map<String, Object>) item;
        slots.acquire();
        TaskRequest job = TaskRequest.fromPolled(data);
        String task = String.valueOf(data.get("task"));
        inflight.put(job.token, true);
        pool.submit(() -> {
          try {
            execute(task, job);
          } finally {
            inflight.remove(job.token);
            slots.release();
          }
        });
      }
    }
    pool.shutdown();
    pool.awaitTermination(1, TimeUnit.HOURS);
    beats.interrupt();
    try {
      call("DELETE", "/workers/" + enc(id), null);
    } catch (Exception e) {
      // the server marks it lost instead
    }
  }

  private void register() throws InterruptedException {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("id", id);
    body.put("host", host());
    body.put("queues", queues);
    body.put("version", "java-0.1.0");
    for (int n = 0; ; n++) {
      try {
        HttpResponse<String> answer = call("POST", "/workers", body);
        if (answer.statusCode() < 300) {
          Object interval = ((Map<?, ?>) Json.parse(answer.body())).get("heartbeat_interval");
          if (interval instanceof Number seconds) heartbeatMillis = Math.max(100, (long) (seconds.doubleValue() * 1000));
          return;
        }
        if (answer.statusCode() < 500) {
          throw new IllegalStateException("registration refused: HTTP " + answer.statusCode() + " " + answer.body());
        }
      } catch (java.io.IOException e) {
        System.err.println("worker registration failed (" + e + "); retrying");
      }
      Thread.sleep(backoff(n));
    }
  }

  private void execute(String task, TaskRequest job) {
    TaskServer.Route route = handlers.get(task);
    TaskResult result;
    if (route == null) {
      result = TaskResult.failed("this worker has no handler for task '" + task + "'");
    } else {
      try {
        result = TaskResult.of(route.handler().handle(job));
      } catch (RetryableException e) {
        result = TaskResult.failed(e.getMessage(), true);
      } catch (Exception e) {
        result = TaskDispatcher.failure(job, e);
      }
    }
    Map<String, Object> body = new LinkedHashMap<>(result.toWire(job.logs()));
    body.put("worker_id", id);
    for (int n = 0; n < 8; n++) {
      try {
        int status = call("POST", "/tasks/" + enc(job.token) + "/result", body).statusCode();
        if (status < 500) return; // 204 done; 404/409: a redelivery won or the attempt ended
      } catch (Exception e) {
        System.err.println("reporting " + task + " failed (" + e + "); retrying");
      }
      try {
        Thread.sleep(backoff(n));
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  private void heartbeats() {
    try {
      while (true) {
        Thread.sleep(heartbeatMillis);
        try {
          HttpResponse<String> answer = call("POST", "/workers/" + enc(id) + "/heartbeat", Map.of("tasks", new ArrayList<>(inflight.keySet())));
          if (answer.statusCode() == 404 && !stopping) register();
        } catch (java.io.IOException e) {
          System.err.println("heartbeat failed: " + e);
        }
      }
    } catch (InterruptedException e) {
      // stopped
    }
  }

  private HttpResponse<String> call(String method, String path, Object body) throws java.io.IOException, InterruptedException {
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(api + path))
        .timeout(Duration.ofSeconds(30))
        .header("Content-Type", "application/json")
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(Json.write(body)));
    if (token != null && !token.isEmpty()) request.header("Authorization", "Bearer " + token);
    return http.send(request.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
  }

  private static long backoff(int n) {
    return Math.min(30_000, 500L << Math.min(n, 6));
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }

  private static String host() {
    try {
      return InetAddress.getLocalHost().getHostName();
    } catch (java.io.IOException e) {
      return "worker";
    }
  }
}
