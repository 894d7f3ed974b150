/**
 * Longest X-GitHub-Delivery accepted. GitHub sends 36-character GUIDs, and the id is a primary
 * key, whose btree index rejects keys of more than about 2,700 bytes.
 */
export const maxDeliveryIdLength = 200;
