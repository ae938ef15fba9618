/**
 * A small typed event emitter: `on` returns the function that removes the listener.
 *
 * A listener that throws does not stop the others, and its exception is not lost: it
 * is handed to `onListenerError` (the client turns it into an `error` event).
 */
export type Listener<T> = (value: T) => void;
export declare class Emitter<Events extends object> {
    private readonly listeners;
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void;
    /** Adds a listener called once, at the next event. */
    once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void;
    off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void;
    /** Number of listeners of `event`. */
    listenerCount<K extends keyof Events>(event: K): number;
}
