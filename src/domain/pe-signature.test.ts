// The Authenticode presence check on hand-built PE files (every field where the parser reads it),
// then on Debian's own files: its signed kernel and shim, and the unsigned shim and iPXE.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { hasAuthenticodeSignature, PeFormatError } from './pe-signature.js';

const PE_OFFSET = 0x80;
/** A PE32+ file: DOS header, "PE\0\0", COFF header, an optional header with 16 data directories, then `tail`. */
function pe(o: { certificate?: { offset?: number; size: number; length?: number; type?: number }; magic?: number; directories?: number; optionalSize?: number } = {}): Buffer {
  const optionalSize = o.optionalSize ?? 112 + 16 * 8;
  const headersEnd = PE_OFFSET + 24 + optionalSize;
  const certificateAt = Math.max(headersEnd, 0x200);
  const buf = Buffer.alloc(certificateAt + (o.certificate?.size ?? 0));
  buf.write('MZ', 0, 'latin1');
  buf.writeUInt32LE(PE_OFFSET, 0x3c);
  buf.write('PE\0\0', PE_OFFSET, 'latin1');
  buf.writeUInt16LE(0x8664, PE_OFFSET + 4); // machine: x86-64
  buf.writeUInt16LE(optionalSize, PE_OFFSET + 20);
  const optional = PE_OFFSET + 24;
  if (optionalSize >= 2) buf.writeUInt16LE(o.magic ?? 0x20b, optional);
  if (optionalSize >= 112) buf.writeUInt32LE(o.directories ?? 16, optional + 108);
  if (o.certificate && optionalSize >= 112 + 5 * 8) {
    buf.writeUInt32LE(o.certificate.offset ?? certificateAt, optional + 112 + 4 * 8);
    buf.writeUInt32LE(o.certificate.size, optional + 112 + 4 * 8 + 4);
    if (o.certificate.size >= 8) {
      buf.writeUInt32LE(o.certificate.length ?? o.certificate.size, certificateAt);
      buf.writeUInt16LE(0x0200, certificateAt + 4);
      buf.writeUInt16LE(o.certificate.type ?? 0x0002, certificateAt + 6);
    }
  }
  return buf;
}

describe('hasAuthenticodeSignature on built PE files', () => {
  it('is true with a PKCS signed-data certificate table, false with none or an empty one', () => {
    expect(hasAuthenticodeSignature(pe({ certificate: { size: 64 } }))).toBe(true);
    expect(hasAuthenticodeSignature(pe())).toBe(false);
    expect(hasAuthenticodeSignature(pe({ certificate: { size: 0 } }))).toBe(false);
    // Too few data directories to have a certificate table: none.
    expect(hasAuthenticodeSignature(pe({ certificate: { size: 64 }, directories: 4 }))).toBe(false);
    // A certificate of another type (X.509 alone) is no Authenticode signature.
    expect(hasAuthenticodeSignature(pe({ certificate: { size: 64, type: 0x0001 } }))).toBe(false);
  });

  it('reads the directories of a PE32 optional header where PE32 keeps them', () => {
    // PE32's directories start 16 bytes earlier: the signed PE32+ layout read as PE32 finds none there.
    expect(hasAuthenticodeSignature(pe({ certificate: { size: 64 }, magic: 0x10b }))).toBe(false);
  });

  it('refuses garbage and truncated files with a PeFormatError that says what is wrong', () => {
    const refusal = (bytes: Uint8Array) => {
      try {
        hasAuthenticodeSignature(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(PeFormatError);
        return (err as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refusal(Buffer.alloc(0))).toMatch(/truncated: the DOS header/);
    expect(refusal(Buffer.from('#!/bin/sh\n'.padEnd(100, ' ')))).toMatch(/no "MZ"/);
    const signed = pe({ certificate: { size: 64 } });
    expect(refusal(signed.subarray(0, PE_OFFSET + 10))).toMatch(/truncated: the PE and COFF headers/);
    expect(refusal(signed.subarray(0, PE_OFFSET + 100))).toMatch(/truncated: the optional header/);
    expect(refusal(signed.subarray(0, signed.length - 1))).toMatch(/certificate table \(64 bytes at \d+\) runs past the file/);
    const badPe = Buffer.from(signed);
    badPe.write('PX', PE_OFFSET, 'latin1');
    expect(refusal(badPe)).toMatch(/no "PE\\0\\0" at byte 128/);
    const farPe = Buffer.from(signed);
    farPe.writeUInt32LE(0xfffffff0, 0x3c);
    expect(refusal(farPe)).toMatch(/truncated/);
    expect(refusal(pe({ magic: 0x1234 }))).toMatch(/unknown optional header magic 0x1234/);
    expect(refusal(pe({ optionalSize: 0 }))).toMatch(/optional header is missing/);
    expect(refusal(pe({ optionalSize: 40 }))).toMatch(/stop before its data directories/);
    expect(refusal(pe({ certificate: { size: 4 } }))).toMatch(/hold no certificate/);
    expect(refusal(pe({ certificate: { size: 64, length: 65 } }))).toMatch(/length 65 does not fit/);
    expect(refusal(pe({ certificate: { size: 64, offset: 0xffffffff } }))).toMatch(/runs past the file/);
  });

  it('never throws anything but a PeFormatError on random bytes after a PE start', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const bytes = pe({ certificate: { size: 64 } });
      let x = seed;
      for (let i = 0; i < 24; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        bytes[(x >>> 8) % Math.min(bytes.length, 0x300)] = x & 0xff;
      }
      try {
        expect(typeof hasAuthenticodeSignature(bytes.subarray(0, (x >>> 4) % bytes.length))).toBe('boolean');
      } catch (err) {
        expect(err).toBeInstanceOf(PeFormatError);
      }
    }
  });
});

/** A Debian kernel as the image builds unpack it (images/debian.ts), if one was unpacked on this machine. */
function debianKernel(): string | undefined {
  const unpacked = join(homedir(), '.cache/shoal/images/unpacked');
  if (!existsSync(unpacked)) return undefined;
  for (const dir of readdirSync(unpacked).filter((d) => d.startsWith('linux-image-'))) {
    const boot = join(unpacked, dir, 'boot');
    const kernel = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
    if (kernel) return join(boot, kernel);
  }
  return undefined;
}

describe("hasAuthenticodeSignature on Debian's files", () => {
  const kernel = debianKernel();
  it.skipIf(!kernel)("finds Debian's signature on its kernel (linux-image-*-amd64)", () => {
    expect(hasAuthenticodeSignature(readFileSync(kernel!))).toBe(true);
  });
  if (!kernel) console.log('skipped: no Debian kernel unpacked under ~/.cache/shoal/images/unpacked (build an image first: npx tsx images/build.ts compute@1)');

  const files = {
    signed: ['/usr/lib/shim/shimx64.efi.signed', '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'],
    unsigned: ['/usr/lib/shim/shimx64.efi', '/usr/lib/ipxe/snponly.efi'],
  };
  const missing = [...files.signed, ...files.unsigned].filter((f) => !existsSync(f));
  it.skipIf(missing.length > 0)('tells signed shim and GRUB from unsigned shim and iPXE', () => {
    for (const f of files.signed) expect(hasAuthenticodeSignature(readFileSync(f)), f).toBe(true);
    for (const f of files.unsigned) expect(hasAuthenticodeSignature(readFileSync(f)), f).toBe(false);
  });
  if (missing.length > 0) console.log(`skipped: ${missing.join(', ')} missing (apt-get install shim-signed grub-efi-amd64-signed ipxe)`);
});
