// Typed failures of a Redfish conversation, so callers (the power facet) can tell a
// wrong password from an unplugged BMC from a BMC that cannot do what was asked.

export class RedfishError extends Error {
  override name = 'RedfishError';
}

/** The endpoint configuration is unusable (bad URL, ambiguous system). */
export class RedfishConfigError extends RedfishError {
  override name = 'RedfishConfigError';
}

/** The caller asked for something that is not a valid request (unknown intent, bad boot override). */
export class RedfishUsageError extends RedfishError {
  override name = 'RedfishUsageError';
}

/** 401 or 403: credentials refused or not allowed to do this. */
export class RedfishAuthError extends RedfishError {
  override name = 'RedfishAuthError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** 404, or a system that is not in the Systems collection. */
export class RedfishNotFoundError extends RedfishError {
  override name = 'RedfishNotFoundError';
}

/** No HTTP reply: connection refused, reset, unresolvable host. */
export class RedfishUnreachableError extends RedfishError {
  override name = 'RedfishUnreachableError';
}

/** No complete reply within the request deadline. */
export class RedfishTimeoutError extends RedfishUnreachableError {
  override name = 'RedfishTimeoutError';
}

/** The BMC's TLS certificate was not trusted (not CA-signed, wrong name, or not the pinned one). */
export class RedfishTlsError extends RedfishError {
  override name = 'RedfishTlsError';
}

/** A reply that is not JSON, does not fit the Redfish schema we rely on, or lacks a required header. */
export class RedfishMalformedReplyError extends RedfishError {
  override name = 'RedfishMalformedReplyError';
}

/** The system does not advertise anything that carries out the requested intent. */
export class RedfishActionNotSupportedError extends RedfishError {
  override name = 'RedfishActionNotSupportedError';
}

/** A task the BMC accepted (202) ended in failure or did not end before the deadline. */
export class RedfishTaskError extends RedfishError {
  override name = 'RedfishTaskError';
}

/** Any other non-success HTTP status, e.g. a 412 that persisted after re-reading the ETag. */
export class RedfishHttpError extends RedfishError {
  override name = 'RedfishHttpError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}
