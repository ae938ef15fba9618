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
export declare class Subscription extends Emitter<SubscriptionEvents> {
    readonly channel: string;
    private readonly owner;
    private readonly wantLatest;
    private currentState;
    private epoch?;
    /** The last offset delivered (or the `since` it started after). */
    private offset?;
    /** What the last subscribe command asked for. */
    private sentSince;
    private sentLatest;
    get state(): SubscriptionState;
    /** The last position delivered on this channel (history channels), for `since` elsewhere. */
    get position(): StreamPosition | undefined;
    /** Stops following the channel. Publications already received are not taken back. */
    unsubscribe(): void;
    private moveTo;
    private lost;
    private setState;
    protected onListenerError(event: string, error: unknown): void;
}
