/**
 * Reconnect backoff, as the Python client does it: capped exponential, with "equal jitter".
 *
 * @module
 */

/**
 * Milliseconds to wait before attempt `attempt` (0-based): a random value between half and all of
 * `min(maxInterval, interval * 2 ** attempt)`.
 *
 * @param {number} attempt
 * @param {number} interval first ceiling, ms
 * @param {number} maxInterval cap, ms
 * @param {() => number} [random] a source of numbers in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, interval, maxInterval, random = Math.random) {
  const ceiling = Math.max(0, Math.min(maxInterval, interval * 2 ** Math.min(attempt, 64)));
  return ceiling / 2 + random() * (ceiling / 2);
}
