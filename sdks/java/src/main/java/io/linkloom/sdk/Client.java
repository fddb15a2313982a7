package io.linkloom.sdk;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.Set;

/** A client of the Link Loom REST API (/api/v1, bearer token); answers are parsed JSON maps. */
public final class Client {
  /** The server's RFC 9457 problem: status, its stable code and detail (what to do). */
  public static final class ApiException extends Exception {
    public final int status;
    public final String code;

    ApiException(int status, String code, String detail) {
      super(status + " " + code + ": " + detail);
      this.status = status;
      this.code = code;
    }
  }

  private static final Set<String> FINAL = Set.of("SUCCEEDED", "FAILED", "CANCELLED");
  private final String api;
  private final String token;
  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();

  public Client(String serverUrl, String token) {
    this.api = serverUrl.replaceAll("/+$", "") + "/api/v1";
    this.token = token;
  }

  /** Apply a spec (a map, or YAML/JSON text) as the flow's new version (admin). */
  public Map<String, Object> putFlow(String flowId, Object spec) throws Exception {
    return request("PUT", "/flows/" + enc(flowId), Map.of("spec", spec));
  }

  /** Start a run of {@code flowId} with {@code inputs}. */
  public Map<String, Object> trigger(String flowId, Map<String, Object> inputs) throws Exception {
    return request("POST", "/flows/" + enc(flowId) + "/runs", Map.of("inputs", inputs));
  }

  /** A run with its steps and their logs. */
  public Map<String, Object> getRun(String runId) throws Exception {
    return request("GET", "/runs/" + enc(runId), null);
  }

  /** Poll until the run ended or {@code timeout} passed (then the last state). */
  public Map<String, Object> waitForRun(String runId, Duration timeout) throws Exception {
    long deadline = System.currentTimeMillis() + timeout.toMillis();
    while (true) {
      Map<String, Object> run = getRun(runId);
      if (FINAL.contains(String.valueOf(run.get("status"))) || System.currentTimeMillis() > deadline) return run;
      Thread.sleep(500);
    }
  }

  @SuppressWarnings("unchecked")
  private Map<String, Object> request(String method, String path, Object body) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(api + path))
        .timeout(Duration.ofSeconds(30))
        .header("Content-Type", "application/json")
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(Json.write(body)));
    if (token != null && !token.isEmpty()) request.header("Authorization", "Bearer " + token);
    HttpResponse<String> answer = http.send(request.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    Object data = answer.body().isBlank() ? Map.of() : Json.parse(answer.body());
    if (answer.statusCode() >= 300) {
      Map<String, Object> problem = data instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
      throw new ApiException(answer.statusCode(), String.valueOf(problem.getOrDefault("code", "api_error")),
          String.valueOf(problem.getOrDefault("detail", answer.body())));
    }
    return data instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of("items", data);
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }
}
