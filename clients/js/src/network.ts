/**
 * The browser's online/offline events (window "online"/"offline"); nothing in Node,
 * where the global object has no addEventListener.
 */
type Target = {
  addEventListener?: (type: string, fn: () => void) => void;
  removeEventListener?: (type: string, fn: () => void) => void;
};

export class NetworkEvents {
  private readonly onOffline: () => void;
  private readonly onOnline: () => void;
  private listening = false;

  constructor(onOffline: () => void, onOnline: () => void) {
    this.onOffline = () => onOffline();
    this.onOnline = () => onOnline();
  }

  start(): void {
    const g = globalThis as Target;
    if (this.listening || typeof g.addEventListener !== "function") return;
    this.listening = true;
    g.addEventListener("offline", this.onOffline);
    g.addEventListener("online", this.onOnline);
  }

  stop(): void {
    const g = globalThis as Target;
    if (!this.listening || typeof g.removeEventListener !== "function") return;
    this.listening = false;
    g.removeEventListener("offline", this.onOffline);
    g.removeEventListener("online", this.onOnline);
  }
}
