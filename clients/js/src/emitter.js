/**
 * A minimal event emitter (browsers have no `node:events`).
 *
 * @module
 */

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(...args: any[]) => void>>} */
    this.listeners = new Map();
  }

  /**
   * Add `listener` for `event`; returns a function that removes it.
   *
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    if (typeof listener !== "function") throw new TypeError(`listener for "${event}" must be a function`);
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   */
  off(event, listener) {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    set.delete(listener);
    if (set.size === 0) this.listeners.delete(event);
  }

  /**
   * @param {string} event
   * @returns {boolean} whether anyone listens
   */
  has(event) {
    return this.listeners.has(event);
  }

  /**
   * Call each listener of `event`; what one throws goes to `onError`, and the others still run.
   *
   * @param {string} event
   * @param {unknown[]} args
   * @param {(error: unknown, event: string) => void} onError
   */
  emit(event, args, onError) {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        const result = /** @type {any} */ (listener(...args));
        if (result && typeof result.then === "function") result.then(undefined, (/** @type {unknown} */ e) => onError(e, event));
      } catch (error) {
        onError(error, event);
      }
    }
  }
}
