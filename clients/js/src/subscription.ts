/**
 * One channel the client follows, and its place in the channel's stream.
 *
 * On a history channel every publication carries an offset. The subscription keeps
 * the last offset it delivered and the stream's epoch; on every (re)subscribe the
 * client sends them as `since`, and the server replays what was missed. A publication
 * whose offset is not above the last delivered one is a duplicate (a replay overlapping
 * what already arrived) and is dropped, so listeners see each offset once, in order.
 */
import { Emitter } from "./emitter.js";
import { PushgateError } from "./errors.js";
import type { Publication, StreamPosition } from "./frames.js";

export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed";

export interface SubscribeOptions {
  /**
   * On the first subscribe, ask for the newest kept publication before live ones
   * (history channels; e.g. a price ticker). Later resubscribes recover from the last
   * offset instead.
   */
  latest?: boolean;
  /**
   * Start after this position instead of "now": e.g. after loading the channel's state
   * at that position from your backend or from GET /history.
   */
  since?: StreamPosition;
}

export interface SubscribedEvent {
  /** True when `since` was sent and the server replayed the gap: nothing was lost. */
  recovered: boolean;
  /** The stream position the server reported (history channels). */
  position?: StreamPosition;
}

export interface UnrecoverableEvent {
  channel: string;
  /**
   * `resubscribe`: after a reconnect, the server could not replay the gap (the epoch
   * changed or the missed publications fell out of the history window).
   * `stream_lost`: the channel's history was lost while subscribed.
   */
  cause: "resubscribe" | "stream_lost";
  /** The position this client had reached. */
  previous?: StreamPosition;
  /** Where the stream stands now: live publications continue after it. */
  position?: StreamPosition;
}

export interface SubscriptionEvents {
  /** A publication on this channel, once per offset, in order. */
  publication: Publication;
  state: SubscriptionState;
  /** The server confirmed the subscription (after every reconnect too). */
  subscribed: SubscribedEvent;
  /** Publications were missed and cannot be replayed: reload this channel's state. */
  unrecoverable: UnrecoverableEvent;
  /** A problem with this subscription (subscribe refused, dropped by a token refresh). */
  error: PushgateError;
}

/** What the client needs from a subscription's owner. @internal */
export interface SubscriptionOwner {
  /** Forgets the subscription; `tellServer`: send `unsubscribe` (false when the server already dropped it). */
  removeSubscription(sub: Subscription, tellServer: boolean): void;
  /** Reports a problem on the client when the subscription has no listener for it. */
  reportUnhandled(error: PushgateError): void;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  private readonly owner: SubscriptionOwner;
  private readonly wantLatest: boolean;
  private currentState: SubscriptionState = "subscribing";
  private epoch?: string;
  /** The last offset delivered (or the `since` it started after). */
  private offset?: number;
  /** What the last subscribe command asked for. */
  private sentSince = false;
  private sentLatest = false;

  /** @internal */
  constructor(owner: SubscriptionOwner, channel: string, options: SubscribeOptions = {}) {
    super();
    this.owner = owner;
    this.channel = channel;
    this.wantLatest = options.latest === true;
    if (options.since) {
      this.epoch = options.since.epoch;
      this.offset = options.since.offset;
    }
  }

  get state(): SubscriptionState {
    return this.currentState;
  }

  /** The last position delivered on this channel (history channels), for `since` elsewhere. */
  get position(): StreamPosition | undefined {
    return this.epoch !== undefined && this.offset !== undefined
      ? { epoch: this.epoch, offset: this.offset }
      : undefined;
  }

  /** Stops following the channel. Publications already received are not taken back. */
  unsubscribe(): void {
    if (this.currentState === "unsubscribed") return;
    this.setState("unsubscribed");
    this.owner.removeSubscription(this, true);
  }

  /** The subscribe command's view of this subscription. @internal */
  request(): { since?: StreamPosition; latest: boolean } {
    const since = this.position;
    const latest = since === undefined && this.wantLatest;
    this.sentSince = since !== undefined;
    this.sentLatest = latest;
    return since ? { since, latest } : { latest };
  }

  /** The server's `subscribed` reply for this channel. @internal */
  confirmed(position: StreamPosition | undefined, recovered: boolean, unrecovered: boolean): void {
    if (this.currentState === "unsubscribed") return;
    const previous = this.position;
    if (unrecovered) {
      this.moveTo(position);
      this.setState("subscribed");
      this.emit("subscribed", withPosition({ recovered: false }, position));
      this.lost({ channel: this.channel, cause: "resubscribe", previous, position });
      return;
    }
    if (recovered && position) {
      // Keep the offset we asked from: the replay (offsets above it) follows this reply.
      this.epoch = position.epoch;
    } else if (position) {
      if (this.sentSince && previous && previous.epoch !== position.epoch) {
        // A server that does not list the channel as unrecovered but changed epoch.
        this.moveTo(position);
        this.lost({ channel: this.channel, cause: "resubscribe", previous, position });
      } else {
        this.epoch = position.epoch;
        // With `latest`, the newest kept publication (at most position.offset) comes
        // next and must not be taken for a duplicate.
        const start = this.sentLatest ? position.offset - 1 : position.offset;
        this.offset = this.offset === undefined ? start : Math.max(this.offset, start);
      }
    } else if (this.sentSince) {
      // `since` for a channel without history is ignored by the server: no offsets.
      this.epoch = undefined;
      this.offset = undefined;
    }
    this.setState("subscribed");
    this.emit("subscribed", withPosition({ recovered: recovered && position !== undefined }, position));
  }

  /** Hands a publication to the listeners unless it is a duplicate; false when dropped. @internal */
  deliver(pub: Publication): boolean {
    if (pub.offset !== undefined) {
      if (this.offset !== undefined && pub.offset <= this.offset) return false;
      this.offset = pub.offset;
    }
    this.emit("publication", pub);
    return true;
  }

  /** The server's `unrecoverable` message: the stream continues after `position`. @internal */
  streamLost(position: StreamPosition): void {
    if (this.currentState === "unsubscribed") return;
    const previous = this.position;
    this.moveTo(position);
    this.lost({ channel: this.channel, cause: "stream_lost", previous, position });
  }

  /** The connection is gone; the client will subscribe again. @internal */
  interrupted(): void {
    if (this.currentState === "subscribed") this.setState("subscribing");
  }

  /** The subscription was refused or dropped by the server; it is over. @internal */
  failed(error: PushgateError): void {
    if (this.currentState === "unsubscribed") return;
    this.setState("unsubscribed");
    this.owner.removeSubscription(this, false);
    if (!this.emit("error", error)) this.owner.reportUnhandled(error);
  }

  private moveTo(position: StreamPosition | undefined): void {
    this.epoch = position?.epoch;
    this.offset = position?.offset;
  }

  private lost(event: UnrecoverableEvent): void {
    if (!this.emit("unrecoverable", event)) {
      this.owner.reportUnhandled(
        new PushgateError("unrecoverable", `channel ${this.channel}: publications were missed and cannot be replayed`, {
          channel: this.channel,
        }),
      );
    }
  }

  private setState(state: SubscriptionState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  protected override onListenerError(event: string, error: unknown): void {
    this.owner.reportUnhandled(
      new PushgateError("listener", `a "${event}" listener of subscription ${this.channel} threw`, {
        channel: this.channel,
        cause: error,
      }),
    );
  }
}

function withPosition(event: SubscribedEvent, position: StreamPosition | undefined): SubscribedEvent {
  if (position) event.position = position;
  return event;
}
