export declare class NetworkEvents {
    private readonly onOffline;
    private readonly onOnline;
    private listening;
    constructor(onOffline: () => void, onOnline: () => void);
    start(): void;
    stop(): void;
}
