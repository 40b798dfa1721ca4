// Types of @prx/pdk. The records mirror wit/ (checked against it by
// plugins/cli/src/javascript_wit.rs, `cargo test -p prx-plugin`).

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Bytes = Uint8Array | string;

export declare const log: Readonly<{
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
  log(level: LogLevel, message: unknown): void;
}>;

export declare const config: Readonly<{
  get(key: string): string | undefined;
  getOr(key: string, fallback: string): string;
  getAll(): [string, string][];
}>;

export declare const kv: Readonly<{
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Bytes): void;
  getString(key: string): string | undefined;
  setString(key: string, value: string): void;
  getJson<T = any>(key: string): T | undefined;
  setJson(key: string, value: unknown): void;
  delete(key: string): boolean;
  listKeys(prefix?: string): string[];
  /** Adds `delta` atomically (a missing key counts as 0); the new value. */
  increment(key: string, delta?: number): number;
}>;

export declare const events: Readonly<{
  publish(topic: string, payload?: string | Json): void;
  publishJson(topic: string, value: unknown): void;
  subscribe(pattern: string): bigint;
  unsubscribe(subscriptionId: bigint | number): void;
}>;

/** Mirrors `http-response` of prx:host/http-outbound, with helpers. */
export interface HttpResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  text?(): string;
  json?<T = any>(): T;
  header?(name: string): string | undefined;
}

export declare const http: Readonly<{
  request(method: string, url: string, headers?: [string, string][] | Record<string, string>, body?: Bytes): Required<HttpResponse>;
  get(url: string, headers?: [string, string][] | Record<string, string>): Required<HttpResponse>;
  postJson(url: string, value: unknown, headers?: [string, string][] | Record<string, string>): Required<HttpResponse>;
  bodyText(response: HttpResponse): string;
  bodyJson<T = any>(response: HttpResponse): T;
}>;

/** Mirrors `memory-entry` of prx:host/memory. */
export interface MemoryEntry {
  id: string;
  text: string;
  category: string;
  importance: number;
}

export declare const memory: Readonly<{
  store(text: string, category?: string): string;
  recall(query: string, limit?: number): MemoryEntry[];
}>;

export declare const clock: Readonly<{
  nowMs(): number;
  nowIso(): string;
}>;

export declare class HostError extends Error {}
export declare class HostUnavailable extends HostError {
  readonly iface: string;
  readonly permission: string | null;
}

export declare class Stat {
  constructor(name: string, value: unknown | (() => unknown));
  name: string;
  text(): string;
}
export declare class ModuleInfo {
  constructor(status?: string, stats?: (Stat | [string, unknown])[]);
  status: string;
  stats: (Stat | [string, unknown])[];
}

export interface Host {
  readonly log: typeof log;
  readonly config: typeof config;
  readonly kv: typeof kv;
  readonly events: typeof events;
  readonly http: typeof http;
  readonly memory: typeof memory;
  readonly clock: typeof clock;
  registerRpc(name: string, fn: (payload: any) => unknown | Promise<unknown>): void;
  registerEventHandler(pattern: string, fn: (event: { type: string; [key: string]: any }) => void | Promise<void>): void;
  publish(event: { type: string; [key: string]: unknown } | string, payload?: unknown): void;
  cacheGet<T = any>(namespace: string, key: string): T | undefined;
  cachePut(namespace: string, key: string, value: unknown): void;
  cacheClear(namespace: string): number;
}
export declare const host: Host;

/** A bus module: a class whose instance registers its handlers in onLoad. */
export interface BusModule {
  onLoad(host: Host, config: Record<string, string>): void;
  describe?(): ModuleInfo;
}

/** Mirrors `tool-spec` of prx:plugin/tool-exports. */
export interface ToolSpec {
  name: string;
  description: string;
  parametersSchema: string;
}
/** Mirrors `plugin-result` of prx:plugin/tool-exports. */
export interface PluginResult {
  success: boolean;
  output: string;
  error?: string;
}
export type MiddlewareAction = { action: "continue"; data: string } | { action: "block"; reason: string };
/** PRX's cron context (not part of the WIT). */
export interface CronContext {
  firedAt: string;
  cronExpr?: string;
}
export interface ChatMessage {
  role: string;
  content: string;
}
export interface ToolCall {
  id: string;
  name: string;
  arguments: string | Json;
}
export interface ChatResponse {
  text?: string;
  toolCalls?: ToolCall[];
}
/** Mirrors `memory-entry` of prx:plugin/storage-exports. */
export interface StoredMemory {
  id: string;
  key: string;
  content: string;
  category: string;
  timestamp: string;
  score?: number;
}
export interface MemoryBackend {
  store(key: string, content: string, category: string, sessionId: string | undefined): void | Promise<void>;
  recall(query: string, limit: number, sessionId: string | undefined): StoredMemory[] | Promise<StoredMemory[]>;
  forget(key: string): boolean | Promise<boolean>;
  count(): number | Promise<number>;
  health?(): boolean;
}

type MaybePromise<T> = T | Promise<T>;

export declare function tool<F extends (args: any) => MaybePromise<unknown>>(
  spec: { name: string; description?: string; schema?: Json | object },
  fn: F,
): F;
export declare function hook<F extends (event: string, payload: any) => MaybePromise<void>>(fn: F): F;
export declare function middleware<F extends (stage: string, data: any) => MaybePromise<unknown>>(fn: F): F;
export declare function cron<F extends () => MaybePromise<string | void>>(fn: F): F;
export declare function provider<F extends (messages: ChatMessage[], model: string, temperature: number) => MaybePromise<string | ChatResponse>>(
  name: string,
  fn: F,
): F;
export declare function storage<T extends MemoryBackend | (new () => MemoryBackend)>(name: string, impl: T): T;

export declare function resultOk(output: string): PluginResult;
export declare function resultErr(error: string): PluginResult;
export declare function middlewareContinue(data: string): MiddlewareAction;
export declare function middlewareBlock(reason: string): MiddlewareAction;
