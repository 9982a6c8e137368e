// The IPMI commands Shoal needs, each as a pure request encoder and a response decoder that
// validates every byte it reads. Numbers and layouts are from the IPMI v2.0 specification
// (chapters 20, 22 and 28).
import { ByteReader } from './codec.js';
import { IpmiMalformedReplyError } from './errors.js';

export const NetFn = { chassis: 0x00, app: 0x06 } as const;

/** Session privilege levels; a command fails with completion code 0xd4 below its level. */
export const Privilege = { user: 2, operator: 3, administrator: 4 } as const;
export type PrivilegeName = keyof typeof Privilege;

export interface Command<Response> {
  name: string;
  netFn: number;
  command: number;
  /** The session privilege the BMC requires for this command. */
  privilege: PrivilegeName;
  data: Buffer;
  decode(data: Buffer): Response;
}

// ---------------------------------------------------------------------------------------
// Session management (App)

export interface ChannelAuthCapabilities {
  channel: number;
  /** The channel can do IPMI v2.0 RMCP+ sessions. */
  ipmi20: boolean;
}

/** Asks for IPMI v2.0 extended data, on the channel the request arrives on. */
export function getChannelAuthCapabilities(privilege: PrivilegeName): Command<ChannelAuthCapabilities> {
  return {
    name: 'Get Channel Authentication Capabilities',
    netFn: NetFn.app,
    command: 0x38,
    privilege: 'user',
    data: Buffer.from([0x8e, Privilege[privilege]]),
    decode(data) {
      const reader = new ByteReader(data, 'Get Channel Authentication Capabilities');
      const channel = reader.u8('channel number') & 0x0f;
      const authTypes = reader.u8('authentication type support');
      reader.u8('authentication status');
      const extended = reader.u8('extended capabilities');
      reader.bytesOf(4, 'OEM ID and auxiliary data');
      reader.expectEnd();
      // Bit 7 says the extended byte is valid; its bit 1 says RMCP+ is supported.
      return { channel, ipmi20: (authTypes & 0x80) !== 0 && (extended & 0x02) !== 0 };
    },
  };
}

export function setSessionPrivilegeLevel(privilege: PrivilegeName): Command<number> {
  return {
    name: 'Set Session Privilege Level',
    netFn: NetFn.app,
    command: 0x3b,
    privilege: 'user',
    data: Buffer.from([Privilege[privilege]]),
    decode(data) {
      const reader = new ByteReader(data, 'Set Session Privilege Level');
      const level = reader.u8('new privilege level') & 0x0f;
      reader.expectEnd();
      return level;
    },
  };
}

export function closeSession(bmcSessionId: number): Command<void> {
  const data = Buffer.alloc(4);
  data.writeUInt32LE(bmcSessionId >>> 0);
  return {
    name: 'Close Session',
    netFn: NetFn.app,
    command: 0x3c,
    privilege: 'user',
    data,
    decode(reply) {
      new ByteReader(reply, 'Close Session').expectEnd();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Get Device ID (App, section 20.1)

export interface DeviceId {
  deviceId: number;
  deviceRevision: number;
  firmwareRevision: string;
  ipmiVersion: string;
  /** IANA enterprise number of the manufacturer. */
  manufacturerId: number;
  productId: number;
}

function bcd(byte: number): string {
  return `${byte >> 4}${byte & 0x0f}`;
}

export function getDeviceId(): Command<DeviceId> {
  return {
    name: 'Get Device ID',
    netFn: NetFn.app,
    command: 0x01,
    privilege: 'user',
    data: Buffer.alloc(0),
    decode(data) {
      const reader = new ByteReader(data, 'Get Device ID');
      const deviceId = reader.u8('device ID');
      const deviceRevision = reader.u8('device revision') & 0x0f;
      const firmwareMajor = reader.u8('firmware major revision') & 0x7f;
      const firmwareMinor = reader.u8('firmware minor revision');
      const ipmiVersion = reader.u8('IPMI version');
      reader.u8('additional device support');
      const manufacturer = reader.bytesOf(3, 'manufacturer ID');
      const productId = reader.u16le('product ID');
      // Four bytes of auxiliary firmware revision may follow; nothing else may.
      if (reader.remaining !== 0) reader.bytesOf(4, 'auxiliary firmware revision');
      reader.expectEnd();
      return {
        deviceId,
        deviceRevision,
        firmwareRevision: `${firmwareMajor}.${bcd(firmwareMinor)}`,
        ipmiVersion: `${ipmiVersion & 0x0f}.${ipmiVersion >> 4}`,
        manufacturerId: manufacturer.readUIntLE(0, 3) & 0x0fffff,
        productId,
      };
    },
  };
}

// ---------------------------------------------------------------------------------------
// Chassis (section 28)

export interface ChassisStatus {
  power: 'on' | 'off';
  powerOverload: boolean;
  powerInterlock: boolean;
  powerFault: boolean;
  powerControlFault: boolean;
  powerRestorePolicy: 'always-off' | 'previous' | 'always-on' | 'unknown';
}

const RESTORE_POLICIES = ['always-off', 'previous', 'always-on', 'unknown'] as const;

export function getChassisStatus(): Command<ChassisStatus> {
  return {
    name: 'Get Chassis Status',
    netFn: NetFn.chassis,
    command: 0x01,
    privilege: 'user',
    data: Buffer.alloc(0),
    decode(data) {
      const reader = new ByteReader(data, 'Get Chassis Status');
      const power = reader.u8('current power state');
      reader.u8('last power event');
      reader.u8('misc chassis state');
      // The front panel button byte is optional.
      if (reader.remaining !== 0) reader.u8('front panel button capabilities');
      reader.expectEnd();
      return {
        power: power & 0x01 ? 'on' : 'off',
        powerOverload: (power & 0x02) !== 0,
        powerInterlock: (power & 0x04) !== 0,
        powerFault: (power & 0x08) !== 0,
        powerControlFault: (power & 0x10) !== 0,
        powerRestorePolicy: RESTORE_POLICIES[(power >> 5) & 0x03]!,
      };
    },
  };
}

export const ChassisControlOperation = {
  off: 0x00,
  on: 0x01,
  cycle: 0x02,
  'hard-reset': 0x03,
  /** ACPI soft shutdown: the OS is asked to power off. */
  'soft-off': 0x05,
} as const;
export type ChassisControlOp = keyof typeof ChassisControlOperation;

export function chassisControl(op: ChassisControlOp): Command<void> {
  const code = ChassisControlOperation[op];
  if (code === undefined) throw new RangeError(`unknown chassis control operation ${String(op)}`);
  return {
    name: `Chassis Control (${op})`,
    netFn: NetFn.chassis,
    command: 0x02,
    privilege: 'operator',
    data: Buffer.from([code]),
    decode(data) {
      new ByteReader(data, 'Chassis Control').expectEnd();
    },
  };
}

// Boot flags, boot option parameter 5 (table 28-14).
const BOOT_FLAGS_PARAMETER = 5;
const BOOT_FLAG_VALID = 0x80;
const BOOT_FLAG_PERSISTENT = 0x40;
const BOOT_FLAG_EFI = 0x20;

export type BootDevice = 'none' | 'pxe' | 'disk' | 'cdrom' | 'bios-setup' | 'other';

/** Device selector values (bits 5:2 of data byte 2). */
const BOOT_DEVICE_SELECTORS: Readonly<Record<number, BootDevice>> = {
  0x0: 'none',
  0x1: 'pxe',
  0x2: 'disk',
  0x5: 'cdrom',
  0x6: 'bios-setup',
};

export interface BootDeviceRequest {
  device: 'pxe' | 'disk';
  /** Apply to every future boot instead of only the next one. */
  persistent: boolean;
  /** Boot the EFI way instead of legacy BIOS. */
  efi: boolean;
}

export interface BootFlags {
  /** The BMC holds a boot override it will apply; false means the firmware's own order. */
  valid: boolean;
  device: BootDevice;
  persistent: boolean;
  efi: boolean;
}

export function setBootFlags(request: BootDeviceRequest): Command<void> {
  const selectors = { pxe: 0x1, disk: 0x2 } as const;
  const selector = selectors[request.device];
  if (selector === undefined) throw new RangeError(`unsupported boot device ${String(request.device)}`);
  let flags = BOOT_FLAG_VALID;
  if (request.persistent) flags |= BOOT_FLAG_PERSISTENT;
  if (request.efi) flags |= BOOT_FLAG_EFI;
  return {
    name: 'Set System Boot Options (boot flags)',
    netFn: NetFn.chassis,
    command: 0x08,
    privilege: 'operator',
    // Parameter selector (bit 7 clear: the parameter is valid), then the 5 data bytes.
    data: Buffer.from([BOOT_FLAGS_PARAMETER, flags, selector << 2, 0x00, 0x00, 0x00]),
    decode(data) {
      new ByteReader(data, 'Set System Boot Options').expectEnd();
    },
  };
}

export function getBootFlags(): Command<BootFlags> {
  return {
    name: 'Get System Boot Options (boot flags)',
    netFn: NetFn.chassis,
    command: 0x09,
    privilege: 'user',
    data: Buffer.from([BOOT_FLAGS_PARAMETER, 0x00, 0x00]),
    decode(data) {
      const reader = new ByteReader(data, 'Get System Boot Options');
      const version = reader.u8('parameter version');
      const parameter = reader.u8('parameter selector') & 0x7f;
      if (version !== 1) throw new IpmiMalformedReplyError(`Get System Boot Options: parameter version ${version}, expected 1`);
      if (parameter !== BOOT_FLAGS_PARAMETER) {
        throw new IpmiMalformedReplyError(`Get System Boot Options: answered parameter ${parameter}, asked ${BOOT_FLAGS_PARAMETER}`);
      }
      const flags = reader.u8('boot flags byte 1');
      const device = reader.u8('boot flags byte 2');
      reader.bytesOf(3, 'boot flags bytes 3-5');
      reader.expectEnd();
      return {
        valid: (flags & BOOT_FLAG_VALID) !== 0,
        device: BOOT_DEVICE_SELECTORS[(device >> 2) & 0x0f] ?? 'other',
        persistent: (flags & BOOT_FLAG_PERSISTENT) !== 0,
        efi: (flags & BOOT_FLAG_EFI) !== 0,
      };
    },
  };
}
