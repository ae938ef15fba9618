/**
 * pushgate-client: the client library of the pushgate WebSocket push gateway, for
 * browsers and Node 20+ (docs/clients.md).
 *
 * ```js
 * import { PushgateClient } from "./pushgate.js";
 * const client = new PushgateClient("ws://127.0.0.1:8080/ws", { getToken: async () => token });
 * client.on("state", (s) => console.log(s));
 * const sub = client.subscribe("chat:1", (pub) => console.log(pub.offset, pub.data));
 * sub.on("unrecoverable", () => reload());
 * client.connect();
 * ```
 */
export { PushgateClient } from "./client.js";
export type { ClientEvents, ClientState, ClientStats, ConnectedEvent, DisconnectedEvent, PushgateClientOptions } from "./options.js";
export { Subscription } from "./subscription.js";
export type {
  SubscribedEvent,
  SubscribeOptions,
  SubscriptionEvents,
  SubscriptionState,
  UnrecoverableEvent,
} from "./subscription.js";
export { PushgateError } from "./errors.js";
export type { PushgateErrorDetails, PushgateErrorType } from "./errors.js";
export type { Publication, StreamPosition, UnknownMessage } from "./frames.js";
export { parseBinary, parseText, channelNameProblem } from "./frames.js";
export { backoffDelay, drainDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { closeAction } from "./close-policy.js";
export type { CloseAction } from "./close-policy.js";
export { jwtExpiry } from "./token.js";
export type { WebSocketConstructor, WebSocketLike } from "./transport.js";
export type { Listener } from "./emitter.js";
