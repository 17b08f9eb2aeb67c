/** The content of flood file i. */
export function floodContent(i: number): Buffer;
/** The virtual path of flood file i. */
export function floodName(i: number): string;
