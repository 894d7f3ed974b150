/**
 * Largest webhook body that the endpoint accepts, in bytes. GitHub caps webhook payloads at
 * 25 MB and drops larger ones.
 */
export const maxWebhookBytes = 25 * 1024 * 1024;
