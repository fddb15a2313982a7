package io.linkloom.sdk;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import io.linkloom.sdk.IdempotencyStore.Reply;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Task endpoints for {@code com.sun.net.httpserver}: each {@link Task}-annotated method of the
 * registered objects is served at {@code POST <prefix>/<task name>}.
 *
 * <pre>{@code
 * TaskServer tasks = new TaskServer(new TaskDispatcher(key, new IdempotencyStore.InMemory()), "/api/tasks");
 * tasks.register(new ReportTasks());
 * server.createContext("/api/tasks/", tasks);
 * }</pre>
 */
public final class TaskServer implements HttpHandler {
  /** A handler and whether it runs as an async step. */
  public record Route(TaskDispatcher.Handler handler, boolean async) {}

  public static final int MAX_BODY_BYTES = 20_000_000;
  private final TaskDispatcher dispatcher;
  private final String prefix;
  private final Map<String, Route> routes = new LinkedHashMap<>();

  public TaskServer(TaskDispatcher dispatcher, String prefix) {
    this.dispatcher = dispatcher;
    this.prefix = prefix.endsWith("/") ? prefix.substring(0, prefix.length() - 1) : prefix;
  }

  public TaskDispatcher dispatcher() {
    return dispatcher;
  }

  /** Serve every {@link Task} method of {@code handlers}. */
  public TaskServer register(Object handlers) {
    routesOf(handlers).forEach((name, route) -> routes.put(prefix + "/" + name, route));
    return this;
  }

  /** Serve one handler at {@code <prefix>/<name>}. */
  public TaskServer task(String name, boolean async, TaskDispatcher.Handler handler) {
    routes.put(prefix + "/" + name, new Route(handler, async));
    return this;
  }

  /** The {@link Task} methods of an object as routes by task name. */
  public static Map<String, Route> routesOf(Object handlers) {
    Map<String, Route> found = new LinkedHashMap<>();
    for (Method method : handlers.getClass().getMethods()) {
      Task task = method.getAnnotation(Task.class);
      if (task == null) continue;
      if (method.getParameterCount() != 1 || method.getParameterTypes()[0] != TaskRequest.class
          || Modifier.isStatic(method.getModifiers())) {
        throw new IllegalArgumentException("@Task method " + method.getName() + " must be an instance method taking a TaskRequest");
      }
      found.put(task.value(), new Route(request -> invoke(method, handlers, request), task.async()));
    }
    return found;
  }

  private static Object invoke(Method method, Object target, TaskRequest request) throws Exception {
    try {
      return method.invoke(target, request);
    } catch (InvocationTargetException e) {
      if (e.getCause() instanceof Exception cause) throw cause;
      throw e;
    }
  }

  @Override
  public void handle(HttpExchange exchange) throws IOException {
    try (exchange) {
      Route route = routes.get(exchange.getRequestURI().getPath());
      Reply reply;
      if (route == null) {
        reply = TaskDispatcher.error(404, "not_found", "no task endpoint at " + exchange.getRequestURI().getPath());
      } else if (!exchange.getRequestMethod().equals("POST")) {
        exchange.getResponseHeaders().set("Allow", "POST");
        reply = TaskDispatcher.error(405, "method_not_allowed", "task endpoints take POST");
      } else {
        byte[] body = read(exchange.getRequestBody());
        if (body == null) {
          reply = TaskDispatcher.error(413, "too_large", "the task body is larger than " + MAX_BODY_BYTES + " bytes");
        } else {
          Map<String, List<String>> headers = new LinkedHashMap<>();
          exchange.getRequestHeaders().forEach((k, v) -> headers.put(k.toLowerCase(), v));
          reply = dispatcher.dispatch(route.handler(), route.async(), body, headers);
        }
      }
      send(exchange, reply.status(), Json.write(reply.body()), reply.headers());
    }
  }

  /** Write a JSON answer. */
  public static void send(HttpExchange exchange, int status, String json, Map<String, String> headers) throws IOException {
    byte[] out = json.getBytes(StandardCharsets.UTF_8);
    headers.forEach((k, v) -> exchange.getResponseHeaders().set(k, v));
    exchange.getResponseHeaders().set("Content-Type", "application/json");
    exchange.sendResponseHeaders(status, out.length);
    try (OutputStream os = exchange.getResponseBody()) {
      os.write(out);
    }
  }

  private static byte[] read(InputStream in) throws IOException {
    byte[] body = in.readNBytes(MAX_BODY_BYTES + 1);
    return body.length > MAX_BODY_BYTES ? null : body;
  }
}
