/**
 * A small typed event emitter: `on` returns the function that removes the listener.
 *
 * A listener that throws does not stop the others, and its exception is not lost: it
 * is handed to `onListenerError` (the client turns it into an `error` event).
 */
export type Listener<T> = (value: T) => void;

export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener called once, at the next event. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** Number of listeners of `event`. */
  listenerCount<K extends keyof Events>(event: K): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  /** Calls every listener of `event`; returns whether there was one. @internal */
  emit<K extends keyof Events>(event: K, value: Events[K]): boolean {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (error) {
        this.onListenerError(String(event), error);
      }
    }
    return true;
  }

  /** Where exceptions thrown by listeners go. @internal */
  protected onListenerError(event: string, error: unknown): void {
    console.error(`pushgate-client: a "${event}" listener threw`, error);
  }
}
