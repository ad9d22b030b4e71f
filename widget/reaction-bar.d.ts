// Types of the Reactions widget: the <reaction-bar> element, its events and define().

/** `reaction-vote`: the reader's reaction changed: at the click (`confirmed` false), and again
 * when ingest has accepted it (`confirmed` true). `null` is no reaction. */
export interface ReactionVoteDetail {
  article: string;
  reaction: string | null;
  previous: string | null;
  confirmed: boolean;
}

/** `reaction-refused`: ingest refused the vote (or did not answer: `status` 0); the bar shows
 * the reader's last accepted reaction again. `code` is the error's, e.g. "rate_limited". */
export interface ReactionRefusedDetail {
  article: string;
  status: number;
  code: string | null;
}

/** `reaction-tally`: the counts shown changed with a tally from the server. */
export interface ReactionTallyDetail {
  article: string;
  counts: Record<string, number>;
  total: number;
  seq: number;
}

/** The events a bar sends (they bubble and cross shadow roots). */
export interface ReactionEvents {
  "reaction-vote": CustomEvent<ReactionVoteDetail>;
  "reaction-refused": CustomEvent<ReactionRefusedDetail>;
  "reaction-tally": CustomEvent<ReactionTallyDetail>;
}

export interface ReactionBarEventMap extends HTMLElementEventMap, ReactionEvents {}

/** A site's token for its logged-in reader, or null (or "") for a reader not logged in. */
export type TokenProvider = () => string | null | Promise<string | null>;

/** The `<reaction-bar>` element. Attributes: `article` (required), `reader`, `ingest`, `lang`,
 * `dir`, `types`, `hide-counts-below`, `readonly`, `compact`. */
export declare class ReactionBar extends HTMLElement {
  /** The site's token for its logged-in readers; the page's bars read their votes again. */
  static setTokenProvider(provider: TokenProvider | null): void;
  addEventListener<K extends keyof ReactionBarEventMap>(
    type: K,
    listener: (this: ReactionBar, event: ReactionBarEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof ReactionBarEventMap>(
    type: K,
    listener: (this: ReactionBar, event: ReactionBarEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
}

/** Registers the element under `name` (default: the script tag's `data-element`, else
 * "reaction-bar"); a name another script has taken is left to it, with a console warning. */
export declare function define(name?: string): typeof ReactionBar;

declare global {
  interface HTMLElementTagNameMap {
    "reaction-bar": ReactionBar;
  }
  interface HTMLElementEventMap extends ReactionEvents {}
}
