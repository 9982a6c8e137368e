// The QEMU end-to-end harness: a private network per run (Lab), VMs on it (Vm), their
// BMCs (IpmiBmc), QMP to drive them (Qmp), and the skip check for machines without them.
export { Lab, labPrefix, sweepLeftovers, type PacketCapture, type RunResult } from './lab.js';
export type { TrackedProcess } from './processes.js';
export { Vm, firmwareFiles, type DirectBoot, type Firmware, type NicModel, type VmBoot, type VmOptions } from './vm.js';
export { IpmiBmc, type IpmiBmcOptions } from './ipmi-bmc.js';
export { Qmp, QmpError, type QmpEvent, type QmpStatus } from './qmp.js';
export { labRequirements } from './requirements.js';
export { RedfishBmc, type RedfishBmcOptions } from './redfish-bmc.js';
export { LabAppliance, type LabApplianceOptions, type NodeView } from './appliance.js';
