// The few host functions the library uses beyond ES2020, present in browsers and in
// Node 20+. Declared here instead of pulling in the DOM or Node type libraries, so the
// emitted .d.ts files depend on neither.
declare function setTimeout(callback: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare function atob(data: string): string;
declare const console: { error(...args: unknown[]): void };
