/** A binary min-heap on a numeric key: the status scheduler's queue, O(log n) per status at 1,000+ sends/s. */
export class DueHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly key: (item: T) => number) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.key(a[parent] as T) <= this.key(a[i] as T)) break;
      [a[parent], a[i]] = [a[i] as T, a[parent] as T];
      i = parent;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.key(a[l] as T) < this.key(a[m] as T)) m = l;
      if (r < a.length && this.key(a[r] as T) < this.key(a[m] as T)) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i] as T, a[m] as T];
      i = m;
    }
    return top;
  }

  clear(): void {
    this.items.length = 0;
  }
}
