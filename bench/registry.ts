// Benchmark sections register themselves here; bench/main.ts runs them.
//
// A section is an async function that measures something and reports rows: a label and
// named values (numbers or short strings such as "n/a: <reason>").

export type BenchValue = number | string;

export interface BenchRow {
  section: string;
  label: string;
  values: Record<string, BenchValue>;
}

export interface SectionContext {
  /** Free-form progress or context line (printed, not recorded). */
  log(line: string): void;
  /** One result row. The first row's value names become the section's table columns. */
  report(label: string, values: Record<string, BenchValue>): void;
  /** A note printed under the section's table and kept in the JSON output. */
  note(line: string): void;
}

export type SectionFn = (ctx: SectionContext) => Promise<void>;

export interface Section {
  name: string;
  description: string;
  run: SectionFn;
}

const sections: Section[] = [];

export function registerSection(name: string, run: SectionFn, description = ''): void {
  if (sections.some((s) => s.name === name)) throw new Error(`benchmark section '${name}' is registered twice`);
  sections.push({ name, description, run });
}

export function registeredSections(): readonly Section[] {
  return sections;
}
