package io.linkloom.sdk;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a method as the handler of task {@code value}: served over HTTP at
 * {@code <prefix>/<value>} by {@link TaskServer} and run by a pull {@link Worker} for steps whose
 * {@code task} is {@code value}. The method takes a {@link TaskRequest} and returns the output, a
 * {@link TaskResult}, or throws ({@link RetryableException}: retried; anything else: failed).
 */
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface Task {
  /** The task name, e.g. {@code "fetch-data"}. */
  String value();

  /** On a {@code mode: async} step: answer 202 at once, run in the background, then call back. */
  boolean async() default false;
}
