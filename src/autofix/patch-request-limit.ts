/**
 * Maximum number of findings in one patch request. The JSON API, the "Preview fix" form and the
 * "Fix with AI" button all keep to it, and the request body limits in src/web/app.tsx leave
 * room for that many ids.
 */
export const maxPatchRequestFindings = 1000;
