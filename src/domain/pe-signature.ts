// Whether a PE/COFF file (an EFI program, a Linux kernel with its EFI stub) carries an Authenticode
// signature: its optional header's certificate-table data directory (index 4) is non-empty and
// points at a WIN_CERTIFICATE of type PKCS_SIGNED_DATA inside the file. This says a signature is
// there, not that anyone trusts it; shim and the firmware check that at boot.

export class PeFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeFormatError';
  }
}

const PE32_MAGIC = 0x10b;
const PE32_PLUS_MAGIC = 0x20b;
const CERTIFICATE_TABLE = 4;
const WIN_CERT_REVISION_2_0 = 0x0200;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002;
/** dwLength, wRevision, wCertificateType. */
const WIN_CERTIFICATE_HEADER = 8;

/** Throws PeFormatError when `bytes` is not a well-formed PE file, or its certificate table is not. */
export function hasAuthenticodeSignature(bytes: Uint8Array): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (end: number, what: string) => {
    if (end > bytes.byteLength) throw new PeFormatError(`truncated: the ${what} ends at byte ${end}, past the file's ${bytes.byteLength}`);
  };
  need(0x40, 'DOS header');
  if (view.getUint16(0, true) !== 0x5a4d) throw new PeFormatError('not a PE file: no "MZ" at its start');
  const peOffset = view.getUint32(0x3c, true);
  need(peOffset + 24, 'PE and COFF headers');
  if (view.getUint32(peOffset, true) !== 0x00004550) throw new PeFormatError(`not a PE file: no "PE\\0\\0" at byte ${peOffset}`);
  const optionalSize = view.getUint16(peOffset + 20, true);
  const optional = peOffset + 24;
  need(optional + optionalSize, 'optional header');
  if (optionalSize < 2) throw new PeFormatError('the optional header is missing');
  const magic = view.getUint16(optional, true);
  // Where NumberOfRvaAndSizes is, and where the data directories start after it.
  const countAt = magic === PE32_MAGIC ? 92 : magic === PE32_PLUS_MAGIC ? 108 : undefined;
  if (countAt === undefined) throw new PeFormatError(`unknown optional header magic 0x${magic.toString(16)}`);
  if (optionalSize < countAt + 4) throw new PeFormatError(`the optional header's ${optionalSize} bytes stop before its data directories`);
  const directories = Math.min(view.getUint32(optional + countAt, true), (optionalSize - countAt - 4) / 8);
  if (directories <= CERTIFICATE_TABLE) return false;
  const entry = optional + countAt + 4 + CERTIFICATE_TABLE * 8;
  // For this one directory the address is a file offset, not an RVA.
  const offset = view.getUint32(entry, true);
  const size = view.getUint32(entry + 4, true);
  if (size === 0) return false;
  if (offset + size > bytes.byteLength) throw new PeFormatError(`the certificate table (${size} bytes at ${offset}) runs past the file's ${bytes.byteLength} bytes`);
  if (size < WIN_CERTIFICATE_HEADER) throw new PeFormatError(`the certificate table's ${size} bytes hold no certificate`);
  const length = view.getUint32(offset, true);
  if (length < WIN_CERTIFICATE_HEADER || length > size) throw new PeFormatError(`the first certificate's length ${length} does not fit the table's ${size} bytes`);
  return view.getUint16(offset + 4, true) === WIN_CERT_REVISION_2_0 && view.getUint16(offset + 6, true) === WIN_CERT_TYPE_PKCS_SIGNED_DATA;
}
