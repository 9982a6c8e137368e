// The key that seals BMC passwords in the store, and the sealing itself. The key lives in a file of
// its own (made at first start, readable by the appliance's user only), apart from the database, so
// a copy of the database alone reveals no password. Each value is AES-256-GCM with a random nonce
// and its node id as associated data: a sealed password copied onto another node does not open.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export class SecretKeyError extends Error {}

export class SecretKey {
  private constructor(
    private readonly key: Buffer,
    readonly path: string,
  ) {}

  /** Reads the key file; throws a SecretKeyError naming the file if it cannot be read or is not a key. */
  static read(path: string): SecretKey {
    let key: Buffer;
    try {
      key = readFileSync(path);
    } catch (err) {
      throw new SecretKeyError(`cannot read the secret key file ${path}: ${(err as Error).message}`);
    }
    if (key.length !== KEY_BYTES) throw new SecretKeyError(`the secret key file ${path} holds ${key.length} bytes; a secret key is ${KEY_BYTES} random bytes`);
    return new SecretKey(key, path);
  }

  /** Makes a new key file (mode 0600); never replaces one that exists. */
  static create(path: string): SecretKey {
    const key = randomBytes(KEY_BYTES);
    try {
      writeFileSync(path, key, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new SecretKeyError(`cannot create the secret key file ${path}: ${(err as Error).message}`);
    }
    return new SecretKey(key, path);
  }

  /**
   * Names the key without revealing it (an HMAC of a fixed label), so the store can tell at open
   * whether its values were sealed with this key.
   */
  get id(): string {
    return createHmac('sha256', this.key).update('shoal secret key id').digest('hex').slice(0, 32);
  }

  /** nonce ‖ ciphertext ‖ tag, base64. */
  seal(nodeId: string, plaintext: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce).setAAD(Buffer.from(nodeId, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
  }

  /** A node's stored BMC password opened, as a store loads it: one that does not open stops the start, naming the node. */
  openBmcPassword(nodeId: string, sealed: string | undefined): string | undefined {
    if (sealed === undefined) return undefined;
    const plaintext = this.open(nodeId, sealed);
    if (plaintext === undefined) {
      throw new SecretKeyError(`the BMC password of node ${nodeId} does not open with the key in ${this.path}: it was sealed for another node, or altered`);
    }
    return plaintext;
  }

  /** The plaintext, or undefined if the value was not sealed with this key for this node (or was altered). */
  open(nodeId: string, sealed: string): string | undefined {
    const raw = Buffer.from(sealed, 'base64');
    if (raw.length < NONCE_BYTES + TAG_BYTES) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, NONCE_BYTES)).setAAD(Buffer.from(nodeId, 'utf8'));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
