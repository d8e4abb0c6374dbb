/**
 * Channel positions: the last `(epoch, offset)` seen per channel, to resume a session and to drop
 * what a resume sends again (docs/protocol.md, "Sessions and recovery").
 *
 * @module
 */

/** The last position seen on each channel, the least recently updated forgotten first. */
export class Positions {
  /**
   * @param {number} [max] channels remembered (the server accepts 1,000 by default)
   * @param {Record<string, [string, number]>} [initial] positions to start from (a stored session)
   */
  constructor(max = 1000, initial = {}) {
    this.max = max;
    /** @type {Map<string, [string, number]>} */
    this.map = new Map();
    for (const [channel, position] of Object.entries(initial ?? {})) {
      if (Array.isArray(position) && typeof position[0] === "string" && Number.isInteger(position[1])) {
        this.remember(channel, position[0], position[1]);
      }
    }
  }

  /**
   * Note a CHANNEL packet's position. False: the client had it already (same epoch, offset not
   * above the last one), drop it. A packet without a position is always new.
   *
   * @param {{channel?: unknown, epoch?: unknown, offset?: unknown}} packet
   * @returns {boolean}
   */
  accept(packet) {
    const { channel, epoch, offset } = packet;
    if (typeof channel !== "string" || typeof epoch !== "string" || typeof offset !== "number") return true;
    const last = this.map.get(channel);
    if (last !== undefined && last[0] === epoch && last[1] >= offset) return false;
    this.remember(channel, epoch, offset);
    return true;
  }

  /**
   * @param {string} channel
   * @param {string} epoch
   * @param {number} offset
   */
  remember(channel, epoch, offset) {
    this.map.delete(channel); // re-inserted last: the least recently updated go first
    this.map.set(channel, [epoch, offset]);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
  }

  /** @returns {Record<string, [string, number]>} the positions, as the session hello sends them */
  toJSON() {
    /** @type {Record<string, [string, number]>} */
    const out = {};
    for (const [channel, [epoch, offset]] of this.map) out[channel] = [epoch, offset];
    return out;
  }
}
