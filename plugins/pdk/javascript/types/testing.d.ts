import type { Host } from "./index.js";

export declare const ALL_PERMISSIONS: readonly string[];

export declare class FakeHost {
  constructor(options?: {
    config?: Record<string, string>;
    permissions?: Iterable<string>;
    responses?: Record<string, [number, string | Uint8Array]>;
    maxKvBytes?: number;
  });
  config: Record<string, string>;
  logs: [string, string][];
  kv: Map<string, Uint8Array>;
  cache: Map<string, Uint8Array>;
  published: [string, string][];
  subscriptions: Map<bigint, string>;
  rpcs: string[];
  requests: [string, string, [string, string][], Uint8Array | undefined][];
  memories: { id: string; text: string; category: string; importance: number }[];
  install(): this;
  uninstall(): void;
  exports(plugin: object, kinds: string[]): Record<string, any>;
  load<T>(cls: new () => T): T;
  rpc(name: string, payload: unknown): any;
  deliver(topic: string, payload: unknown): void;
  describe(): [string, [string, string][]];
}
export type { Host };
