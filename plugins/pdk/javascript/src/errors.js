// Errors the SDK throws, and how a JavaScript exception becomes the error
// a caller receives.

/** The host refused or failed a call (a permission, a quota, a disallowed
 * URL, a full store). The message is the host's. */
export class HostError extends Error {
  constructor(message) {
    super(message);
    this.name = "HostError";
  }
}

/** A host interface this plugin was not built with. */
export class HostUnavailable extends HostError {
  constructor(iface, permission) {
    const hint = permission
      ? `declare the \`${permission}\` permission in plugin.toml ([permissions].required or optional) and build again; if it is declared, this plugin's world does not offer it`
      : "this plugin's world does not offer it";
    super(`prx:host/${iface} is not available to this plugin: ${hint}`);
    this.name = "HostUnavailable";
    this.iface = iface;
    this.permission = permission;
  }
}

/** `Name: message`, as the caller sees a failed call. */
export function describe(error) {
  if (error instanceof Error) {
    const name = error.name || "Error";
    return error.message ? `${name}: ${error.message}` : name;
  }
  if (typeof error === "string") return error;
  try {
    return `thrown value: ${JSON.stringify(error)}`;
  } catch {
    return `thrown value: ${String(error)}`;
  }
}
