import { verify } from 'node:crypto';

export type JwtCheck = { valid: true } | { valid: false; message: string };

/** GitHub rejects app JWTs whose lifetime (`exp` minus `iat`) exceeds ten minutes. */
const maxLifetimeSeconds = 10 * 60;
/** Clock skew tolerated for `iat` in the future. */
const allowedSkewSeconds = 60;

const undecodable = 'A JSON web token could not be decoded';

function decodeJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Verifies a GitHub App JWT: RS256 signed by the app's private key, `iss` equal to the app id
 * (as a number or a string), `iat` not in the future and `exp` in the future at most ten minutes
 * after `iat`. Messages for `exp` and `iat` are GitHub's own wording.
 */
export function verifyAppJwt(
  jwt: string,
  options: { appId: string; publicKeyPem: string; nowSeconds?: number },
): JwtCheck {
  const parts = jwt.split('.');
  if (parts.length !== 3) {
    return { valid: false, message: undecodable };
  }
  const [encodedHeader = '', encodedPayload = '', encodedSignature = ''] = parts;
  const header = decodeJson(encodedHeader);
  const payload = decodeJson(encodedPayload);
  if (!isRecord(header) || !isRecord(payload) || header.alg !== 'RS256') {
    return { valid: false, message: undecodable };
  }

  const signatureValid = verify(
    'RSA-SHA256',
    Buffer.from(`${encodedHeader}.${encodedPayload}`),
    options.publicKeyPem,
    Buffer.from(encodedSignature, 'base64url'),
  );
  if (!signatureValid) {
    return { valid: false, message: undecodable };
  }

  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const { iat, exp, iss } = payload;
  if (typeof iat !== 'number' || !Number.isInteger(iat) || iat > now + allowedSkewSeconds) {
    return {
      valid: false,
      message:
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
    };
  }
  if (typeof exp !== 'number' || exp <= now) {
    return {
      valid: false,
      message:
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    };
  }
  if (exp - iat > maxLifetimeSeconds) {
    return { valid: false, message: "'Expiration time' claim ('exp') is too far in the future" };
  }
  // NOTE: GitHub's wording for an issuer that does not match is not known here.
  if ((typeof iss !== 'number' && typeof iss !== 'string') || String(iss) !== options.appId) {
    const message = `'Issuer' claim ('iss') does not match app id ${options.appId}`;
    return { valid: false, message };
  }
  return { valid: true };
}
