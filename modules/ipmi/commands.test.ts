// Command encoders and decoders against byte layouts from the IPMI v2.0 spec; the Get Device
// ID bytes are what ipmi_sim answers (ipmitool `mc info` shows the same decoded values).
import { describe, expect, it } from 'vitest';
import {
  chassisControl,
  closeSession,
  getBootFlags,
  getChannelAuthCapabilities,
  getChassisStatus,
  getDeviceId,
  setBootFlags,
  setSessionPrivilegeLevel,
} from './commands.js';
import { IpmiMalformedReplyError } from './errors.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

describe('session commands', () => {
  it('asks channel capabilities with IPMI v2.0 extended data and reads RMCP+ support', () => {
    const command = getChannelAuthCapabilities('administrator');
    expect(command.data).toEqual(hex('8e04'));
    expect(command.decode(hex('01 97 04 03 000000 00'))).toEqual({ channel: 1, ipmi20: true });
    // IPMI 1.5-only BMC: no extended capabilities bit.
    expect(command.decode(hex('01 17 04 00 000000 00'))).toEqual({ channel: 1, ipmi20: false });
    expect(() => command.decode(hex('01 97 04'))).toThrow(IpmiMalformedReplyError);
  });

  it('sets the session privilege and closes a session by the BMC session ID', () => {
    const raise = setSessionPrivilegeLevel('operator');
    expect(raise.data).toEqual(hex('03'));
    expect(raise.decode(hex('03'))).toBe(3);
    expect(() => raise.decode(hex(''))).toThrow(IpmiMalformedReplyError);
    expect(closeSession(0x02000004).data).toEqual(hex('04000002'));
    expect(() => closeSession(1).decode(hex('00'))).toThrow(/trailing/);
  });
});

describe('Get Device ID', () => {
  it('decodes ipmi_sim’s answer the way ipmitool mc info shows it', () => {
    const decoded = getDeviceId().decode(hex('00 03 09 08 02 9f 911200 020f 00000000'));
    expect(decoded).toEqual({
      deviceId: 0,
      deviceRevision: 3,
      firmwareRevision: '9.08',
      ipmiVersion: '2.0',
      manufacturerId: 4753,
      productId: 0x0f02,
    });
  });

  it('accepts the answer without auxiliary firmware bytes, rejects partial ones', () => {
    expect(getDeviceId().decode(hex('20 81 01 23 51 bf 570100 0100')).ipmiVersion).toBe('1.5');
    expect(() => getDeviceId().decode(hex('20 81 01 23 51 bf 570100 0100 0000'))).toThrow(IpmiMalformedReplyError);
    expect(() => getDeviceId().decode(hex('20 81 01 23 51 bf 5701'))).toThrow(IpmiMalformedReplyError);
  });
});

describe('Get Chassis Status', () => {
  it('reads power from bit 0 and the rest of the power state byte', () => {
    expect(getChassisStatus().decode(hex('01 00 00'))).toMatchObject({ power: 'on', powerFault: false });
    expect(getChassisStatus().decode(hex('00 00 00'))).toMatchObject({ power: 'off' });
    expect(getChassisStatus().decode(hex('28 00 00 00'))).toMatchObject({
      power: 'off',
      powerFault: true,
      powerRestorePolicy: 'previous',
    });
  });

  it('rejects truncated and oversized answers', () => {
    expect(() => getChassisStatus().decode(hex(''))).toThrow(IpmiMalformedReplyError);
    expect(() => getChassisStatus().decode(hex('01 00'))).toThrow(IpmiMalformedReplyError);
    expect(() => getChassisStatus().decode(hex('01 00 00 00 00'))).toThrow(IpmiMalformedReplyError);
  });
});

describe('Chassis Control', () => {
  it.each([
    ['off', 0x00],
    ['on', 0x01],
    ['cycle', 0x02],
    ['hard-reset', 0x03],
    ['soft-off', 0x05],
  ] as const)('sends %s as code %i', (op, code) => {
    const command = chassisControl(op);
    expect(command.data).toEqual(Buffer.from([code]));
    expect(command.privilege).toBe('operator');
  });

  it('refuses an unknown operation before sending anything', () => {
    expect(() => chassisControl('explode' as never)).toThrow(RangeError);
  });
});

describe('boot flags (boot option parameter 5)', () => {
  it.each([
    [{ device: 'pxe', persistent: false, efi: false }, '05 80 04 000000'],
    [{ device: 'pxe', persistent: true, efi: false }, '05 c0 04 000000'],
    [{ device: 'pxe', persistent: false, efi: true }, '05 a0 04 000000'],
    [{ device: 'disk', persistent: true, efi: true }, '05 e0 08 000000'],
  ] as const)('encodes %o', (request, bytes) => {
    expect(setBootFlags(request).data).toEqual(hex(bytes));
  });

  it('refuses a device it cannot express', () => {
    expect(() => setBootFlags({ device: 'floppy' as never, persistent: false, efi: false })).toThrow(RangeError);
  });

  it('decodes what Get System Boot Options returns', () => {
    expect(getBootFlags().data).toEqual(hex('050000'));
    expect(getBootFlags().decode(hex('01 05 e0 04 000000'))).toEqual({ valid: true, device: 'pxe', persistent: true, efi: true });
    // ipmi_sim keeps only the device: flags byte 0, "Boot Flag Invalid" in ipmitool.
    expect(getBootFlags().decode(hex('01 05 00 08 000000'))).toEqual({ valid: false, device: 'disk', persistent: false, efi: false });
    expect(getBootFlags().decode(hex('01 85 80 3c 000000')).device).toBe('other');
  });

  it('rejects the wrong parameter, version or length', () => {
    expect(() => getBootFlags().decode(hex('01 04 00 08 000000'))).toThrow(/parameter 4/);
    expect(() => getBootFlags().decode(hex('02 05 00 08 000000'))).toThrow(/version 2/);
    expect(() => getBootFlags().decode(hex('01 05 00 08 0000'))).toThrow(IpmiMalformedReplyError);
    expect(() => getBootFlags().decode(hex('01 05 00 08 00000000'))).toThrow(IpmiMalformedReplyError);
  });
});
