// A loaded output folder and the two ways to run it: on a WebGPU device (the generated WGSL)
// or on the CPU reference interpreter (the lowered IR), behind one interface. The parts live
// in core.ts (portable), load.ts (Node, WebGPU) and cpu-engine.ts (the interpreter).
export { evaluate, gpuEngineOf, openProgramOn, parseProgramFile, programInit, type Engine, type LoadedProgram, type Samples } from './core.js';
export { gpuEngine, loadProgram, loadProgramDir, openProgram } from './load.js';
export { cpuEngine } from './cpu-engine.js';
