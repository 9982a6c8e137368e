// Small GPT disks for tests, made with sfdisk, mkfs.vfat and mtools on a plain file (no loop
// devices, no root): partition 1 an EFI system partition from 1 MiB holding the given files, as
// build-disk makes one, partition 2 a Linux partition starting with the given bytes.
import { execFileSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';

const MIB = 1024 * 1024;
const ESP_START = 2048;
const ESP_SECTORS = 8192;

export const GPT_DISK_TOOLS = ['sfdisk', 'mkfs.vfat', 'mmd', 'mcopy', 'dd'];

export function gptDisk(path: string, o: { esp: Record<string, Buffer>; root?: Buffer; sizeMb?: number }): string {
  writeFileSync(path, '');
  truncateSync(path, (o.sizeMb ?? 8) * MIB);
  const rootStart = ESP_START + ESP_SECTORS;
  execFileSync('sfdisk', ['--quiet', path], { input: `label: gpt\nstart=${ESP_START}, size=${ESP_SECTORS}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=${rootStart}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n` });
  execFileSync('mkfs.vfat', ['--offset', String(ESP_START), path, String(ESP_SECTORS / 2)], { stdio: 'ignore' });
  const at = `${path}@@${ESP_START * 512}`;
  for (const [file, bytes] of Object.entries(o.esp)) {
    const dirs = file.split('/').slice(0, -1);
    for (let i = 1; i <= dirs.length; i++) execFileSync('mmd', ['-D', 's', '-i', at, `::/${dirs.slice(0, i).join('/')}`], { stdio: 'ignore' });
    const local = `${path}.file`;
    writeFileSync(local, bytes);
    execFileSync('mcopy', ['-o', '-i', at, local, `::/${file}`]);
  }
  execFileSync('dd', [`of=${path}`, 'bs=512', `seek=${rootStart}`, 'conv=notrunc', 'status=none'], { input: o.root ?? Buffer.from('the root partition\n') });
  return path;
}
