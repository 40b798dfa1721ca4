/** Used by the entry module prx-plugin build writes; not for plugins. */
export declare function bind(plugin: object, capabilities: string[], interfaces: Record<string, object>, source?: string): Record<string, object>;
