/**
 * Near-miss guard for the semantic cache.
 *
 * Sentence embeddings put "Set an alarm for 6:30 am" and "... 7:30 am" at 0.99 cosine while true paraphrases
 * score lower, so no threshold alone separates them. Before a semantic hit is served, this guard compares the
 * salient features of the two prompts (numbers, dates, times, amounts, units, quoted strings, code identifiers,
 * languages, named entities, negation, opposite words, and the direction of "X to Y") and vetoes the hit when
 * they differ. It compares SETS of features, not word order, so free rewording is not vetoed.
 *
 * Pure, synchronous, no model: a few regular-expression passes over each prompt (microseconds per pair).
 * For one query checked against several candidates, extract the query's features once with
 * `guard.extract()` and call `guard.compare()` per candidate.
 *
 * Decisions (documented here and tested):
 * - Numbers: digits and number words ("twenty five", "a hundred") are normalized; "1,000" = "1000" = "1k";
 *   decimals keep their written form ("3.10" != "3.1", versions). Order is ignored ("3 and 5" = "5 and 3")
 *   except across ordered connectors: "3 to 7" vs "7 to 3" and "7 minus 3" vs "3 minus 7" are vetoed.
 *   The bare word "one" is not a number ("which one is faster") unless it is part of a compound or is
 *   followed by a unit ("one hour" = "1 hour").
 * - Times: "6:30" = "6:30am" = "6:30 a.m." (a time without am/pm matches either); "18:30" = "6:30 pm";
 *   "noon" = "12:00 pm"; "six thirty pm" = "6:30pm".
 * - Entities: capitalized words not at a sentence start, acronyms, and a built-in list of countries, cities
 *   and companies (matched in any case). An entity counts as present in the other prompt when that prompt
 *   contains it in any case, as an acronym of its words ("AI" / "artificial intelligence", "NYC" /
 *   "New York City"), through an alias group ("NYC" = "New York", "US" = "USA" = "United States"), or as a
 *   close suffix variant ("Austria" / "Austrian").
 * - Identifiers and quoted strings count as present when the other prompt contains them (case-insensitively
 *   for identifiers, exactly for quoted strings).
 *   Ordinal words, roman numerals and digits are the same number: "the sixteenth" = "the 16th", "World War II"
 *   = "the Second World War", "Henry VIII" = "Henry the Eighth", "twenty-first" = "21st", "twice" = "2 times".
 *   "first" matches a 1 without demanding one; roman numerals count after a capitalized word or a numbering noun.
 * - Identifiers: a short token of letters and digits also matches its spelled-out form ("2FA" / "two-factor",
 *   "i18n" / "internationalization", "SHA-256" / "sha256", "ELI5" / "like I'm five" through an alias group).
 * - Negation: vetoed when exactly one of the prompts contains a negation word, unless the other prompt says the
 *   same with a privative word: "offline" / "without an internet connection", "passwordless" / "without a
 *   password", "unpaid" / "haven't paid", "sugar-free" / "no sugar".
 * - Opposites: vetoed when one prompt has one side of a pair (and not the other) and the other prompt has
 *   the other side (and not the first); not for a base form against a comparative of its opposite ("slow" /
 *   "faster": problem and goal), nor for "not valid" / "invalid". Very common opposites ("up"/"down", "on"/"off",
 *   "start"/"end") are vetoed only when they are the one word in which the prompts differ.
 * - Synonyms of capitalized common nouns are aliases ("Earth" = "world", "Mom" = "mother"), and abbreviated
 *   parts of names match their expansion ("Mt. Fuji" = "Mount Fuji", "St." = "Saint").
 */

export type GuardKind =
  | 'number'
  | 'date'
  | 'time'
  | 'amount'
  | 'unit'
  | 'quoted'
  | 'identifier'
  | 'language'
  | 'entity'
  | 'negation'
  | 'opposite';

export const GUARD_KINDS: readonly GuardKind[] = [
  'number', 'date', 'time', 'amount', 'unit', 'quoted', 'identifier', 'language', 'entity', 'negation', 'opposite',
];

/** Why a hit was vetoed: the kind, and the features only the first (`a`) or only the second (`b`) prompt has. */
export interface GuardReason {
  kind: GuardKind;
  a: string[];
  b: string[];
  /** Set when the features are the same but their order across "to"/"minus"/... is reversed. */
  reversed?: boolean;
}

export interface GuardResult {
  veto: boolean;
  reasons: GuardReason[];
}

export interface NearMissGuardOptions {
  /** Kinds not to check. */
  disable?: readonly GuardKind[];
  /** Extra pairs of opposite words or phrases, e.g. ['staging', 'production']. */
  opposites?: ReadonlyArray<readonly [string, string]>;
  /** Extra entity names, matched in any case (e.g. product names, customers, people). */
  entities?: readonly string[];
  /** Groups of names that denote the same entity, e.g. ['k8s', 'kubernetes']. */
  aliases?: ReadonlyArray<readonly string[]>;
  /** Extra negation words. */
  negations?: readonly string[];
}

/** Features of one prompt, reusable across comparisons. */
export interface PromptFeatures {
  readonly text: string;
  /** Lower-cased words joined by single spaces, padded with a space at both ends. */
  readonly joined: string;
  readonly words: ReadonlySet<string>;
  readonly numbers: Map<string, boolean>; // value -> strong
  readonly times: string[]; // "h:mm" plus "a"/"p"/"" meridiem
  readonly dates: Set<string>;
  readonly amounts: Set<string>;
  readonly units: Set<string>;
  readonly quoted: Set<string>;
  readonly identifiers: Set<string>;
  readonly languages: Set<string>;
  readonly entities: Set<string>;
  readonly negation: string[];
  readonly directed: Array<{ kind: GuardKind; from: string; to: string }>;
  /** opposite pair index -> sides present (1, 2 or 3 for both) */
  readonly sides: Map<number, number>;
  /** gradable opposite pair index -> degrees present (1 base form, 2 comparative, 3 both) */
  readonly degrees: Map<number, number>;
  /** lower-cased words in order (capped), for the swap check around "to", "than", "but", ... */
  readonly sequence: readonly string[];
}

export interface NearMissGuard {
  (a: string, b: string): GuardResult;
  extract(text: string): PromptFeatures;
  compare(a: PromptFeatures, b: PromptFeatures): GuardResult;
}

// ---------------------------------------------------------------------------------------------------------
// Tables

const split = (s: string): string[] => s.trim().split(/\s+/);

/** Lookup tables without a prototype: "constructor" or "toString" in a prompt must not find Object's members. */
const table = <T>(entries: Record<string, T>): Record<string, T> => Object.assign(Object.create(null) as Record<string, T>, entries);

const SMALL: Record<string, number> = table({
  zero: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
  eleven: 11, twelve: 12, thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17, eighteen: 18,
  nineteen: 19, twenty: 20, thirty: 30, forty: 40, fifty: 50, sixty: 60, seventy: 70, eighty: 80, ninety: 90,
  dozen: 12, twice: 2, thrice: 3,
});
const SCALE: Record<string, number> = table({ hundred: 100, thousand: 1e3, million: 1e6, billion: 1e9, trillion: 1e12 });
/**
 * Ordinal words. After "the" they are numbers ("the sixteenth president" = "the 16th president"); elsewhere
 * they only match a number of the other prompt (weak), except "second" (also a unit of time). "first" is
 * always weak: it matches "1st" / "World War I" but does not demand a 1 ("the first 10 primes").
 */
const ORDINAL: Record<string, number> = table({
  first: 1, second: 2, third: 3, fourth: 4, fifth: 5, sixth: 6, seventh: 7, eighth: 8, ninth: 9, tenth: 10,
  eleventh: 11, twelfth: 12, thirteenth: 13, fourteenth: 14, fifteenth: 15, sixteenth: 16, seventeenth: 17,
  eighteenth: 18, nineteenth: 19, twentieth: 20, thirtieth: 30, fortieth: 40, fiftieth: 50, sixtieth: 60,
  seventieth: 70, eightieth: 80, ninetieth: 90, hundredth: 100, thousandth: 1000,
});
/** Upper-case roman numerals I..XXXIX ("World War II", "Henry VIII", "Part IV"). */
const ROMAN_RE = /^(X{0,3})(IX|IV|V?I{0,3})$/;
const ROMAN_LOWER_RE = /^(x{0,3})(ix|iv|v?i{0,3})$/;
function romanValue(s: string): number {
  const r = ROMAN_RE.exec(s);
  if (!r || !s) return 0;
  const units: Record<string, number> = { '': 0, I: 1, II: 2, III: 3, IV: 4, V: 5, VI: 6, VII: 7, VIII: 8, IX: 9 };
  return r[1]!.length * 10 + units[r[2]!]!;
}
/** Words after which a roman numeral is a number even when lower-case or a single letter ("Part I", "Type II"). */
const NUMBERING_NOUN = new Set(split(
  'war part chapter phase act volume vol book episode season type class level stage article section title round ' +
  'grade category tier generation wave',
));

const MONTHS: Record<string, number> = table({
  january: 1, jan: 1, february: 2, feb: 2, march: 3, mar: 3, april: 4, apr: 4, may: 5, june: 6, jun: 6,
  july: 7, jul: 7, august: 8, aug: 8, september: 9, sep: 9, sept: 9, october: 10, oct: 10, november: 11,
  nov: 11, december: 12, dec: 12,
});
/** Month words that are also ordinary English words: only a date when capitalized or next to a number. */
const AMBIGUOUS_MONTHS = new Set(['may', 'march', 'mar', 'jan', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec', 'feb', 'apr', 'sept']);
const DATE_WORDS: Record<string, string> = table({
  monday: 'monday', tuesday: 'tuesday', wednesday: 'wednesday', thursday: 'thursday', friday: 'friday',
  saturday: 'saturday', sunday: 'sunday', today: 'today', tonight: 'today', tomorrow: 'tomorrow',
  yesterday: 'yesterday', weekend: 'weekend', q1: 'q1', q2: 'q2', q3: 'q3', q4: 'q4',
});
for (const d of ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday', 'weekend']) DATE_WORDS[`${d}s`] = d;
const DATE_PERIOD = new Set(['week', 'month', 'year', 'weekend', 'quarter', 'morning', 'evening', 'night', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday']);
const DATE_RELATIVE = new Set(['next', 'last', 'this', 'previous', 'coming']);

const CURRENCY_SYMBOL: Record<string, string> = table({ $: 'usd', '€': 'eur', '£': 'gbp', '¥': 'jpy', '₹': 'inr', '₽': 'rub', '₩': 'krw', '₿': 'btc' });
const CURRENCY_WORD: Record<string, string> = table({
  usd: 'usd', dollar: 'usd', dollars: 'usd', bucks: 'usd', eur: 'eur', euro: 'eur', euros: 'eur', gbp: 'gbp',
  pound: 'gbp', pounds: 'gbp', sterling: 'gbp', jpy: 'jpy', yen: 'jpy', inr: 'inr', rupee: 'inr', rupees: 'inr',
  cny: 'cny', yuan: 'cny', rmb: 'cny', chf: 'chf', franc: 'chf', francs: 'chf', cad: 'cad', aud: 'aud',
  btc: 'btc', bitcoin: 'btc', bitcoins: 'btc', eth: 'eth', ether: 'eth', cent: 'cent', cents: 'cent',
  percent: '%', per_cent: '%', percentage: '%',
});
/** Currencies that are ambiguous as bare words (not after a number): "pound" is also a weight. */
const BARE_CURRENCY_SKIP = new Set(['pound', 'pounds', 'cent', 'cents', 'percent', 'percentage', 'franc', 'ether', 'bucks']);

/** Units: canonical -> spellings. Time units count only after a number. */
const UNIT_TABLE: Array<[string, string, boolean]> = [
  // canonical, spellings, counts as a bare word (without a number)
  ['km', 'km kms kilometer kilometers kilometre kilometres', true],
  ['m', 'm meter meters metre metres', false],
  ['cm', 'cm centimeter centimeters centimetre centimetres', true],
  ['mm', 'mm millimeter millimeters millimetre millimetres', true],
  ['mi', 'mi mile miles', true],
  ['ft', 'ft foot feet', true],
  ['in', 'inch inches', true],
  ['yd', 'yd yard yards', false],
  ['kg', 'kg kgs kilo kilos kilogram kilograms kilogramme', true],
  ['g', 'g gram grams gramme', true],
  ['mg', 'mg milligram milligrams', true],
  ['lb', 'lb lbs', true],
  ['oz', 'oz ounce ounces', true],
  ['l', 'l liter liters litre litres', true],
  ['ml', 'ml milliliter milliliters millilitre millilitres', true],
  ['gal', 'gal gallon gallons', true],
  ['c', '°c ºc celsius centigrade', true],
  ['f', '°f ºf fahrenheit', true],
  ['k', 'kelvin', true],
  ['b', 'byte bytes', false],
  ['bit', 'bit bits', false],
  ['kb', 'kb kib kilobyte kilobytes', true],
  ['mb', 'mb mib megabyte megabytes', true],
  ['gb', 'gb gib gigabyte gigabytes', true],
  ['tb', 'tb tib terabyte terabytes', true],
  ['mbps', 'mbps', true],
  ['gbps', 'gbps', true],
  ['ms', 'ms millisecond milliseconds msec', true],
  ['us', 'µs μs microsecond microseconds', true],
  ['ns', 'ns nanosecond nanoseconds', true],
  ['s', 's sec secs second seconds', false],
  ['min', 'min mins minute minutes', false],
  ['h', 'h hr hrs hour hours', false],
  ['d', 'day days', false],
  ['wk', 'week weeks', false],
  ['mo', 'month months', false],
  ['y', 'yr yrs year years', false],
  ['px', 'px pixel pixels', true],
  ['em', 'em', false],
  ['rem', 'rem', false],
  ['pt', 'pt pts', false],
  ['mph', 'mph', true],
  ['kmh', 'kph km/h kmh', true],
  ['w', 'w watt watts', false],
  ['kw', 'kw kilowatt kilowatts', true],
  ['kwh', 'kwh', true],
  ['v', 'v volt volts', false],
  ['hz', 'hz hertz', true],
  ['mhz', 'mhz megahertz', true],
  ['ghz', 'ghz gigahertz', true],
  ['cal', 'cal kcal calorie calories', true],
  ['x', 'x times', false],
];
const SHORT_BARE_UNITS = new Set(['km', 'kg', 'cm', 'mm', 'mb', 'gb', 'tb', 'kb', 'lb', 'oz', 'ml', 'px']);
const UNIT: Map<string, string> = new Map();
const BARE_UNIT: Map<string, string> = new Map();
for (const [canon, spellings, bare] of UNIT_TABLE) {
  for (const s of split(spellings)) {
    UNIT.set(s, canon);
    if (bare && (s.length > 2 || SHORT_BARE_UNITS.has(s))) BARE_UNIT.set(s, canon);
  }
}

/** Programming, query and natural languages: spelling -> canonical. */
const LANGUAGE: Map<string, string> = new Map();
for (const group of [
  'python py python3', 'javascript js ecmascript', 'typescript ts', 'java', 'kotlin', 'scala', 'groovy',
  'c++ cpp', 'c# csharp', 'f# fsharp', 'rust', 'ruby', 'php', 'perl', 'swift', 'objective-c objc',
  'golang', 'dart', 'lua', 'haskell', 'elixir', 'erlang', 'clojure', 'ocaml', 'julia', 'matlab', 'fortran',
  'cobol', 'zig', 'nim', 'crystal', 'solidity', 'bash', 'zsh', 'powershell', 'sql', 'mysql', 'postgresql postgres psql',
  'sqlite', 'tsql t-sql', 'plsql', 'graphql', 'html', 'css', 'scss sass', 'less-css', 'yaml yml', 'json', 'xml', 'toml',
  'markdown', 'latex', 'regex regexp', 'wasm webassembly', 'assembly asm', 'vba', 'vb.net', 'visual-basic',
  'english', 'french', 'spanish', 'german', 'italian', 'portuguese', 'dutch', 'russian', 'chinese mandarin',
  'japanese', 'korean', 'arabic', 'hindi', 'turkish', 'polish', 'swedish', 'norwegian', 'danish', 'finnish',
  'greek', 'hebrew', 'ukrainian', 'czech', 'vietnamese', 'thai', 'indonesian', 'latin',
  'node.js nodejs node', 'deno', 'bun',
]) {
  const names = split(group);
  for (const n of names) LANGUAGE.set(n, names[0]!);
}
LANGUAGE.set('go', 'golang');
// "Go", "C", "R" are languages only as written with a capital (and "go" after "in"/"using"/...).
const CASED_LANGUAGE: Record<string, string> = table({ Go: 'golang', C: 'c', R: 'r', D: 'd', 'C++': 'c++', 'C#': 'c#' });
const LANGUAGE_CUE = new Set(['in', 'using', 'with', 'to', 'into', 'from', 'learn', 'write']);

const NEGATION = new Set(split(
  "not no never none nothing nobody nowhere neither nor without cannot cant can't don't dont doesn't doesnt " +
  "isn't isnt aren't arent wasn't wasnt weren't werent won't wont wouldn't wouldnt shouldn't shouldnt " +
  "couldn't couldnt didn't didnt haven't havent hasn't hasnt hadn't hadnt mustn't needn't ain't " +
  "can’t don’t doesn’t isn’t aren’t won’t didn’t shouldn’t wouldn’t couldn’t haven’t hasn’t wasn’t weren’t",
));

/** At least 40 pairs of opposites; multi-word sides are matched as phrases. */
const OPPOSITES: Array<[string, string]> = [
  ['min', 'max'], ['minimum', 'maximum'], ['minimize', 'maximize'], ['smallest', 'largest'], ['smallest', 'biggest'],
  ['lowest', 'highest'], ['low', 'high'], ['lower', 'higher'], ['shortest', 'longest'], ['short', 'long'],
  ['fewest', 'most'], ['least', 'most'], ['less', 'more'], ['fewer', 'more'], ['cheapest', 'most expensive'],
  ['cheap', 'expensive'], ['oldest', 'newest'], ['old', 'new'], ['earliest', 'latest'], ['slowest', 'fastest'],
  ['slow', 'fast'], ['enable', 'disable'], ['enabled', 'disabled'], ['ascending', 'descending'], ['asc', 'desc'],
  ['increase', 'decrease'], ['increment', 'decrement'], ['first', 'last'], ['next', 'previous'], ['add', 'remove'],
  ['add', 'subtract'], ['plus', 'minus'], ['multiply', 'divide'], ['buy', 'sell'], ['open', 'close'],
  ['start', 'stop'], ['start', 'end'], ['begin', 'end'], ['upload', 'download'], ['import', 'export'],
  ['encrypt', 'decrypt'], ['encode', 'decode'], ['compress', 'decompress'], ['zip', 'unzip'], ['push', 'pull'],
  ['install', 'uninstall'], ['lock', 'unlock'], ['show', 'hide'], ['visible', 'hidden'], ['expand', 'collapse'],
  ['before', 'after'], ['above', 'below'], ['over', 'under'], ['left', 'right'], ['top', 'bottom'],
  ['upper', 'lower'], ['uppercase', 'lowercase'], ['inner', 'outer'], ['horizontal', 'vertical'],
  ['horizontally', 'vertically'], ['true', 'false'], ['success', 'failure'], ['allow', 'deny'], ['allow', 'block'],
  ['accept', 'reject'], ['include', 'exclude'], ['valid', 'invalid'], ['public', 'private'], ['input', 'output'],
  ['read', 'write'], ['send', 'receive'], ['login', 'logout'], ['log in', 'log out'], ['sign in', 'sign out'],
  ['sign up', 'sign out'], ['subscribe', 'unsubscribe'], ['connect', 'disconnect'], ['mount', 'unmount'],
  ['attach', 'detach'], ['positive', 'negative'], ['even', 'odd'], ['sync', 'async'],
  ['synchronous', 'asynchronous'], ['serialize', 'deserialize'], ['prepend', 'append'], ['head', 'tail'],
  ['forward', 'backward'], ['forwards', 'backwards'], ['win', 'lose'], ['profit', 'loss'], ['income', 'expense'],
  ['debit', 'credit'], ['borrow', 'lend'], ['arrival', 'departure'], ['inbound', 'outbound'],
  ['incoming', 'outgoing'], ['upstream', 'downstream'], ['grant', 'revoke'], ['follow', 'unfollow'],
  ['block', 'unblock'], ['mute', 'unmute'], ['pin', 'unpin'], ['archive', 'unarchive'], ['merge', 'split'],
  ['create', 'delete'], ['insert', 'delete'], ['add', 'delete'], ['hot', 'cold'], ['warm', 'cool'],
  ['heat', 'cool'], ['north', 'south'], ['east', 'west'], ['up', 'down'], ['turn on', 'turn off'],
  ['switch on', 'switch off'], ['round up', 'round down'], ['scroll up', 'scroll down'], ['move up', 'move down'],
  ['go up', 'go down'], ['speed up', 'slow down'], ['count up', 'count down'], ['power on', 'power off'], ['on', 'off'], ['in', 'out'], ['zoom in', 'zoom out'], ['scale up', 'scale down'],
  ['upgrade', 'downgrade'], ['upvote', 'downvote'], ['inside', 'outside'], ['internal', 'external'],
  ['import', 'export'], ['strong', 'weak'], ['light', 'dark'], ['white', 'black'], ['day', 'night'],
  ['morning', 'evening'], ['male', 'female'], ['men', 'women'], ['boy', 'girl'], ['pros', 'cons'],
  ['advantages', 'disadvantages'], ['benefits', 'drawbacks'], ['easy', 'hard'], ['easiest', 'hardest'],
  ['best', 'worst'], ['better', 'worse'], ['always', 'never'], ['all', 'none'], ['with', 'without'],
  ['require', 'optional'], ['required', 'optional'], ['mandatory', 'optional'], ['greater', 'less'],
  ['greater', 'smaller'], ['bigger', 'smaller'], ['larger', 'smaller'], ['rise', 'fall'], ['gain', 'lose'],
  ['approve', 'reject'], ['accept', 'decline'], ['import', 'export'], ['source', 'destination'],
  ['client', 'server'], ['frontend', 'backend'], ['front end', 'back end'], ['parent', 'child'],
  ['encrypted', 'unencrypted'], ['signed', 'unsigned'], ['mutable', 'immutable'], ['lazy', 'eager'],
  ['deep', 'shallow'], ['global', 'local'], ['static', 'dynamic'], ['explicit', 'implicit'], ['online', 'offline'],
];
/**
 * Gradable adjectives among the opposites: "slow" vs "faster" (or "expensive" vs "cheaper") is the same request
 * phrased as problem and goal ("my query is slow" / "make my query faster"), so a base form on one side and a
 * comparative of its opposite on the other side is not vetoed. Same degree on both sides still is: "cheap" /
 * "expensive", "faster" / "slower", "cheaper" / "more expensive".
 */
const GRADABLE = new Set(split(
  'slow fast cheap expensive easy hard strong weak hot cold warm cool deep shallow lazy eager small large big ' +
  'short long low high old new light dark early late',
));
/** "on"/"off", "in"/"out", "up"/"down" etc. are too common alone: only matched as parts of the phrases above. */
const PHRASE_ONLY = new Set(['on', 'off', 'in', 'out', 'with', 'all', 'none', 'end', 'day', 'long', 'short', 'new', 'old', 'high', 'low', 'up', 'down', 'light', 'head']);

/** Built-in entities matched in any case: countries, big cities, companies and products. "_" joins words. */
const ENTITIES = split(
  'afghanistan albania algeria argentina armenia australia austria azerbaijan bangladesh belarus belgium bolivia ' +
  'bosnia brazil bulgaria cambodia cameroon canada chile china colombia croatia cuba cyprus czechia denmark ' +
  'ecuador egypt estonia ethiopia finland france georgia germany ghana greece guatemala hungary iceland india ' +
  'indonesia iran iraq ireland israel italy jamaica japan jordan kazakhstan kenya kuwait latvia lebanon libya ' +
  'lithuania luxembourg madagascar malaysia mexico moldova mongolia montenegro morocco mozambique myanmar nepal ' +
  'netherlands holland nigeria norway pakistan panama paraguay peru philippines poland portugal qatar romania ' +
  'russia rwanda serbia singapore slovakia slovenia somalia spain sudan sweden switzerland syria taiwan ' +
  'tanzania thailand tunisia turkey uganda ukraine uruguay uzbekistan venezuela vietnam yemen zambia zimbabwe ' +
  'new_zealand south_africa south_korea north_korea saudi_arabia united_states united_kingdom sri_lanka ' +
  'costa_rica united_arab_emirates usa uk uae england scotland wales europe asia africa antarctica ' +
  'london paris berlin madrid rome vienna sydney melbourne tokyo beijing shanghai moscow dubai mumbai delhi ' +
  'bangalore toronto vancouver montreal chicago boston seattle denver austin dallas houston miami atlanta ' +
  'amsterdam brussels lisbon prague warsaw budapest dublin oslo stockholm copenhagen helsinki zurich geneva ' +
  'munich hamburg milan barcelona istanbul athens cairo nairobi lagos seoul singapore bangkok jakarta manila ' +
  'canberra ottawa washington nyc new_york los_angeles san_francisco las_vegas hong_kong rio_de_janeiro ' +
  'google alphabet microsoft amazon aws netflix tesla nvidia openai anthropic ibm intel amd samsung sony ' +
  'nintendo oracle salesforce paypal shopify stripe github gitlab bitbucket slack twitter facebook instagram ' +
  'whatsapp tiktok youtube linkedin reddit spotify uber airbnb azure gcp heroku vercel netlify cloudflare ' +
  'docker kubernetes k8s linux ubuntu debian fedora centos macos ios android iphone ipad chrome firefox safari ' +
  'nginx apache kafka rabbitmq redis mongodb elasticsearch terraform ansible jenkins vscode vim emacs intellij ' +
  'excel gmail outlook dropbox notion jira trello figma wordpress react vue angular svelte nextjs next.js django ' +
  'flask fastapi rails laravel spring express nestjs pandas numpy pytorch tensorflow webpack vite npm pnpm yarn ' +
  'pip conda git postman windows mac',
).map((e) => e.replace(/_/g, ' '));

const ALIASES: string[][] = [
  ['nyc', 'new york', 'new york city'], ['us', 'usa', 'united states', 'united states of america', 'america', 'u.s.'],
  ['uk', 'united kingdom', 'britain', 'great britain'], ['uae', 'united arab emirates', 'emirates'],
  ['la', 'los angeles'], ['sf', 'san francisco'], ['holland', 'netherlands'], ['k8s', 'kubernetes'],
  ['aws', 'amazon web services'], ['gcp', 'google cloud', 'google cloud platform'], ['ai', 'artificial intelligence'],
  ['ml', 'machine learning'], ['js', 'javascript'], ['ts', 'typescript'], ['postgres', 'postgresql'],
  ['next.js', 'nextjs'], ['vscode', 'vs code', 'visual studio code'], ['alphabet', 'google'], ['mac', 'macos', 'macbook'],
  ['twitter', 'x'], ['czechia', 'czech republic'], ['turkey', 'türkiye'],
  // common nouns often capitalized, and their synonyms: not different entities
  ['earth', 'world', 'planet earth'], ['mom', 'mother', 'mum', 'mommy', 'mama'], ['dad', 'father', 'daddy', 'papa'],
  // acronyms whose expansion is not a run of initials
  ['eli5', "like i'm five", "like i'm 5", 'like im five', 'like im 5', 'like i am five', 'like i am 5',
    'like a five year old', 'like a 5 year old'],
  ['tldr', 'tl dr'], ['2fa', 'two factor', 'two step', '2 factor', '2 step'],
  ['mfa', 'multi factor', 'multifactor'],
];

/** Abbreviated words and their expansions (parts of names: "Mt. Fuji" = "Mount Fuji"). */
const WORD_ABBREV: Map<string, string[]> = new Map();
for (const [abbr, full] of [
  ['mt', 'mount'], ['mtn', 'mountain'], ['st', 'saint street'], ['ft', 'fort'], ['pt', 'point port'], ['jr', 'junior'],
  ['sr', 'senior'], ['dr', 'doctor drive'], ['ave', 'avenue'], ['rd', 'road'], ['blvd', 'boulevard'],
  ['hwy', 'highway'], ['univ', 'university'], ['uni', 'university'], ['intl', 'international'], ['natl', 'national'],
  ['dept', 'department'], ['govt', 'government'], ['gov', 'government'], ['corp', 'corporation'],
  ['inc', 'incorporated'], ['co', 'company county'], ['bros', 'brothers'], ['assoc', 'association'],
  ['mr', 'mister'], ['lk', 'lake'], ['pk', 'park'], ['sq', 'square'], ['ctr', 'center centre'],
] as const) {
  for (const f of split(full)) {
    WORD_ABBREV.set(abbr, [...(WORD_ABBREV.get(abbr) ?? []), f]);
    WORD_ABBREV.set(f, [...(WORD_ABBREV.get(f) ?? []), abbr]);
  }
}
/** Abbreviations written with a dot that do not end a sentence ("Mt. Everest", "St. Louis", "Python vs. Go"). */
const DOT_ABBREV = new Set(split('mt mtn st dr mr mrs ms prof gen col lt sgt capt ft jr sr vs ave rd blvd'));

/** Capitalized words that are not entities even mid-sentence. */
const CAP_STOP = new Set(split(
  "i i'm i've i'd i'll im ive id ok okay hi hello hey please thanks thank yes no mr mrs ms dr st " +
  'the a an and or but if is are was were be do does did can could would should will shall may might must ' +
  'what why how when where which who whom whose this that these those it its my your our their me you we they ' +
  'he she him her them in on at for to of by with from as into about also then now so just note edit update ' +
  'tldr tl;dr eg ie etc vs via faq btw fyi asap imo imho pls plz thx',
));

// ---------------------------------------------------------------------------------------------------------
// Extraction

const CAP_RE = /^\p{Lu}/u;
const LOWER_RE = /\p{Ll}/u;
const ACRONYM_RE = /^\p{Lu}[\p{Lu}\d]+$/u;
const INITIAL_GAP_RE = /[.!?:;•*>(\[]\s*["“'‘(]?\s*$/;
/** Known names that are also common words: entities only when capitalized. */
const CASED_ENTITY = new Set(split('windows mac spring express oracle git turkey georgia chrome safari notion amazon uk us jordan chad china'));
const TITLE_FUNCTION_WORDS = new Set(split('a an the to in on of for and or with from by at as is are how do does what'));
const stripPossessive = (w: string): string => (w.endsWith("'s") || w.endsWith('’s') ? w.slice(0, -2) : w);
// English contractions stay one word ("don't", "it's"); elisions split ("l’Autriche" -> "l", "Autriche")
const WORD_RE = /[\p{L}\p{N}_]+(?:['’](?:s|t|re|ve|ll|d|m|clock)(?![\p{L}\p{N}]))?/gu;
const NUM = String.raw`\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?`;

function normNumber(raw: string, suffix?: string): string {
  let s = raw.replace(/,/g, '');
  if (!s.includes('.')) s = s.replace(/^0+(?=\d)/, '');
  if (suffix) {
    const mult = { k: 1e3, m: 1e6, mm: 1e6, b: 1e9, bn: 1e9 }[suffix.toLowerCase()];
    if (mult) {
      const v = Number(s) * mult;
      if (Number.isFinite(v)) return String(Math.round(v * 1e6) / 1e6);
    }
  }
  return s;
}

function blank(text: string, start: number, end: number): string {
  return text.slice(0, start) + ' '.repeat(end - start) + text.slice(end);
}

interface Span { kind: GuardKind; value: string; start: number; end: number }

interface Compiled {
  disabled: Set<GuardKind>;
  /** single-word form -> [pair index, side (1 | 2), degree (0 not gradable, 1 base, 2 comparative)] */
  oppForms: Map<string, Array<[number, number, number]>>;
  /** "x|y" for single-word opposites too common to count alone ("up|down"): vetoed only as a one-word swap */
  swapOnly: Set<string>;
  /** multi-word forms by first word: [phrase, pair index, side] */
  oppPhrases: Map<string, Array<[string, number, number]>>;
  oppNames: Array<[string, string]>;
  entityWords: Set<string>;
  entityPhrases: Map<string, string[]>;
  aliasOf: Map<string, number>;
  aliasGroups: string[][];
  negations: Set<string>;
}

function compile(options: NearMissGuardOptions = {}): Compiled {
  const entityWords = new Set<string>();
  const entityPhrases = new Map<string, string[]>();
  for (const e of [...ENTITIES, ...(options.entities ?? []).map((x) => x.toLowerCase().trim()).filter(Boolean)]) {
    if (e.includes(' ')) {
      const first = e.slice(0, e.indexOf(' '));
      entityPhrases.set(first, [...(entityPhrases.get(first) ?? []), e]);
    }
    else entityWords.add(e);
  }
  const aliasGroups = [...ALIASES, ...(options.aliases ?? []).map((g) => g.map((x) => x.toLowerCase().trim()))];
  const aliasOf = new Map<string, number>();
  aliasGroups.forEach((g, i) => g.forEach((name) => { if (!aliasOf.has(name)) aliasOf.set(name, i); }));
  const opposites = [...OPPOSITES, ...(options.opposites ?? []).map(([x, y]) => [x.toLowerCase().trim(), y.toLowerCase().trim()] as [string, string])];
  const seen = new Set<string>();
  const uniq = opposites.filter(([x, y]) => {
    const k = `${x}|${y}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return {
    disabled: new Set(options.disable ?? []),
    ...indexOpposites(uniq.filter(([x, y]) => x.includes(' ') || y.includes(' ') || (!PHRASE_ONLY.has(x) && !PHRASE_ONLY.has(y)))),
    swapOnly: new Set(uniq.filter(([x, y]) => !x.includes(' ') && !y.includes(' ') && (PHRASE_ONLY.has(x) || PHRASE_ONLY.has(y)))
      .flatMap(([x, y]) => [`${x}|${y}`, `${y}|${x}`])),
    entityWords,
    entityPhrases,
    aliasOf,
    aliasGroups,
    negations: new Set([...NEGATION, ...(options.negations ?? []).map((x) => x.toLowerCase())]),
  };
}

function indexOpposites(pairs: Array<[string, string]>): Pick<Compiled, 'oppForms' | 'oppPhrases' | 'oppNames'> {
  const oppForms = new Map<string, Array<[number, number, number]>>();
  const oppPhrases = new Map<string, Array<[string, number, number]>>();
  pairs.forEach(([x, y], i) => {
    const gradable = GRADABLE.has(x) && GRADABLE.has(y);
    for (const [w, side] of [[x, 1], [y, 2]] as const) {
      const cmp = gradable ? comparatives(w) : [];
      for (const f of [...wordForms(w), ...cmp]) {
        if (f.includes(' ')) {
          const first = f.slice(0, f.indexOf(' '));
          let list = oppPhrases.get(first);
          if (!list) oppPhrases.set(first, (list = []));
          list.push([f, i, side]);
        }
        else {
          let list = oppForms.get(f);
          if (!list) oppForms.set(f, (list = []));
          if (!list.some(([j, sd]) => j === i && sd === side)) list.push([i, side, !gradable ? 0 : cmp.includes(f) ? 2 : 1]);
        }
      }
    }
  });
  return { oppForms, oppPhrases, oppNames: pairs };
}

/** Comparative forms of a gradable adjective: "faster", "cheaper", "later", "easier", "bigger". */
function comparatives(w: string): string[] {
  if (w.endsWith('e')) return [`${w}r`];
  if (w.endsWith('y')) return [`${w.slice(0, -1)}ier`];
  if (/[^aeiou][aeiou][bdgmnprt]$/.test(w)) return [`${w}${w.at(-1)}er`];
  return [`${w}er`];
}

function wordForms(w: string): string[] {
  if (w.includes(' ')) {
    // inflect the first word of a phrase: "turn on" -> "turns on", "turned on", "turning on"
    const [head, ...rest] = w.split(' ');
    return wordForms(head!).map((h) => [h, ...rest].join(' '));
  }
  const forms = [w, `${w}s`, `${w}es`, `${w}d`, `${w}ed`, `${w}ing`, `${w}er`, `${w}ers`];
  if (w.endsWith('e')) forms.push(`${w.slice(0, -1)}ing`);
  if (w.endsWith('y')) forms.push(`${w.slice(0, -1)}ies`, `${w.slice(0, -1)}ied`);
  if (/[^aeiou][aeiou][bdgmnprt]$/.test(w)) forms.push(`${w}${w.at(-1)}ing`, `${w}${w.at(-1)}ed`);
  return forms;
}

const monthRe = Object.keys(MONTHS).sort((x, y) => y.length - x.length).join('|');
const RE_MONTH_DATE = new RegExp(String.raw`\b(${monthRe})\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b(?!\s*(?::|am|pm|a\.m|p\.m))|\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(${monthRe})\b`, 'gi');
const RE_AMOUNT_SYMBOL = new RegExp(String.raw`([$€£¥₹₽₩₿])\s?(${NUM})\s?(k|m|mm|bn|b)?\b|(${NUM})\s?(k|m|bn|b)?\s?([$€£¥₹₽₩₿])`, 'gi');
const RE_AMOUNT_WORD = new RegExp(String.raw`(?<![\w.])(${NUM})\s?(k|bn)?\s?(%|percent\b|per cent\b|usd\b|dollars?\b|eur\b|euros?\b|gbp\b|pounds?\b|jpy\b|yen\b|inr\b|rupees?\b|cny\b|yuan\b|chf\b|francs?\b|cad\b|aud\b|btc\b|bitcoins?\b|eth\b|cents?\b|bucks\b)`, 'gi');
const RE_QUANTITY = new RegExp(String.raw`(?<![\w.])(${NUM})\s?([°º]?[a-zµμ/]+)\b`, 'gi');
const RE_NUMBER_SUFFIX = new RegExp(String.raw`(?<![\w.])(${NUM})(k|m|bn)\b`, 'g');
const RE_NUMBER = new RegExp(String.raw`(?<![\w.])-?(${NUM})(?![\w])`, 'g');

const MAX_INPUT = 20_000; // features of a longer prompt are taken from its first and last 10k characters

function extractWith(c: Compiled, input: string): PromptFeatures {
  let text = String(input ?? '').normalize('NFKC');
  if (text.length > MAX_INPUT) text = `${text.slice(0, MAX_INPUT / 2)}\n${text.slice(-MAX_INPUT / 2)}`;
  const spans: Span[] = [];
  const numbers = new Map<string, boolean>();
  const times: string[] = [];
  const dates = new Set<string>();
  const amounts = new Set<string>();
  const units = new Set<string>();
  const quoted = new Set<string>();
  const identifiers = new Set<string>();
  const languages = new Set<string>();
  const entities = new Set<string>();
  const negation: string[] = [];
  let m = text;
  const take = (re: RegExp, fn: (match: RegExpExecArray) => boolean | void): void => {
    re.lastIndex = 0;
    let r: RegExpExecArray | null;
    const found: Array<[number, number]> = [];
    while ((r = re.exec(m)) !== null) {
      if (r[0].length === 0) { re.lastIndex++; continue; }
      if (fn(r) !== false) found.push([r.index, r.index + r[0].length]);
    }
    for (const [s, e] of found) m = blank(m, s, e);
  };
  const addNumber = (v: string, strong = true, start = -1, end = -1) => {
    numbers.set(v, (numbers.get(v) ?? false) || strong);
    if (start >= 0) spans.push({ kind: 'number', value: v, start, end });
  };

  // 1. code blocks and backticks
  take(/```[\s\S]*?```|```[\s\S]*$/g, (r) => { quoted.add(r[0].replace(/^```\w*|```$/g, '').replace(/\s+/g, ' ').trim()); });
  take(/`([^`\n]{1,200})`/g, (r) => { identifiers.add(r[1]!.trim().replace(/\(.*\)$/, '').toLowerCase()); });
  // 2. quoted strings (straight quotes must not be apostrophes)
  take(/"([^"\n]{1,300})"|“([^”\n]{1,300})”|‘([^’\n]{1,300})’|(?<![\p{L}\p{N}])'([^'\n]{1,300})'(?![\p{L}\p{N}])/gu, (r) => {
    const q = (r[1] ?? r[2] ?? r[3] ?? r[4] ?? '').replace(/\s+/g, ' ').trim();
    if (q) quoted.add(q);
  });
  // 3. URLs, emails, paths, flags
  take(/\bhttps?:\/\/[^\s)\]]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g, (r) => { identifiers.add(r[0].replace(/[.,;:!?]+$/, '').toLowerCase()); });
  take(/(?<![\w/])(?:~|\.{1,2})?\/[\w.\-]+(?:\/[\w.\-]*)+/g, (r) => { identifiers.add(r[0].toLowerCase()); });
  take(/(?<![\w-])--?[A-Za-z][\w-]*/g, (r) => {
    if (/^-[a-z]+$/.test(r[0]) && r[0].length > 4) return false;
    identifiers.add(r[0].toLowerCase());
  });
  // 4. dates
  take(/\b(\d{4})-(\d{1,2})-(\d{1,2})\b/g, (r) => {
    dates.add(`${+r[2]!}/${+r[3]!}`);
    addNumber(r[1]!);
  });
  take(/\b(\d{1,2})[/.](\d{1,2})[/.](\d{2,4})\b/g, (r) => {
    dates.add(`${+r[1]!}/${+r[2]!}`);
    addNumber(r[3]!.length === 2 ? `20${r[3]}` : r[3]!);
  });
  take(RE_MONTH_DATE, (r) => {
    const month = MONTHS[(r[1] ?? r[4])!.toLowerCase()]!;
    const day = +(r[2] ?? r[3])!;
    if (day < 1 || day > 31) return false;
    dates.add(`${month}/${day}`);
  });
  // 5. times
  const toTime = (h: number, min: number, mer: string | undefined): string | null => {
    if (h > 24 || min > 59) return null;
    const mm = String(min).padStart(2, '0');
    const md = mer ? (mer[0]!.toLowerCase() === 'a' ? 'a' : 'p') : '';
    if (md && (h > 12 || h === 0)) return null;
    return `${h}:${mm}${md}`;
  };
  take(/\b(\d{1,2}):(\d{2})(?::\d{2})?\s*([ap]\.?m\.?)?(?![\w:])|\b(\d{1,2})\s*([ap]\.?m\.?)(?!\w)/gi, (r) => {
    const t = r[1] !== undefined ? toTime(+r[1], +r[2]!, r[3]) : toTime(+r[4]!, 0, r[5]);
    if (!t) return false;
    times.push(t);
  });
  take(/\b(\d{1,2})\s*o'?clock\b/gi, (r) => { const t = toTime(+r[1]!, 0, undefined); if (t) times.push(t); });
  take(/\b(noon|midday|midnight)\b/gi, (r) => { times.push(r[1]!.toLowerCase() === 'midnight' ? '12:00a' : '12:00p'); });
  // 6. amounts: currency symbol before a number, or a number before a currency word/code, or percent
  take(RE_AMOUNT_SYMBOL, (r) => {
    const cur = CURRENCY_SYMBOL[(r[1] ?? r[6])!]!;
    const v = normNumber((r[2] ?? r[4])!, r[3] ?? r[5]);
    amounts.add(`${cur} ${v}`);
    spans.push({ kind: 'amount', value: `${cur} ${v}`, start: r.index, end: r.index + r[0].length });
  });
  take(RE_AMOUNT_WORD, (r) => {
    const word = r[3]!.toLowerCase().replace(' ', '_');
    const cur = word === '%' ? '%' : CURRENCY_WORD[word] ?? word;
    const v = normNumber(r[1]!, r[2]);
    amounts.add(`${cur} ${v}`);
    spans.push({ kind: 'amount', value: `${cur} ${v}`, start: r.index, end: r.index + r[0].length });
  });
  // 7. quantities: number + unit
  take(RE_QUANTITY, (r) => {
    const u = UNIT.get(r[2]!.toLowerCase());
    if (!u) return false;
    if (u === 'x' && r[2]!.toLowerCase() === 'x' && /\d\s?x\s?\d/i.test(m.slice(r.index, r.index + r[0].length + 3))) return false;
    const v = normNumber(r[1]!);
    addNumber(v, true, r.index, r.index + r[1]!.length);
    units.add(u);
    spans.push({ kind: 'unit', value: u, start: r.index + r[0].length - r[2]!.length, end: r.index + r[0].length });
  });
  // 8. languages written with symbols, then code identifiers
  take(/(?<![\w.])(c\+\+|c#|f#|node\.js|next\.js|vb\.net|asp\.net|\.net|objective-c|t-sql)(?![\w+#])/gi, (r) => {
    const key = r[1]!.toLowerCase();
    const lang = LANGUAGE.get(key) ?? key;
    if (lang === 'next.js') entities.add('next.js');
    else languages.add(lang);
    spans.push({ kind: 'language', value: lang, start: r.index, end: r.index + r[0].length });
  });
  take(/\b[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*\([^()\n]{0,80}\)/g, (r) => { identifiers.add(r[0].replace(/\(.*$/, '').toLowerCase()); });
  take(/\b[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+\b/g, (r) => {
    const parts = r[0].split('.');
    if (parts.every((p) => p.length <= 1)) return false; // e.g., i.e.
    identifiers.add(r[0].toLowerCase());
  });
  take(/\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b|\b_[A-Za-z0-9_]+\b/g, (r) => { identifiers.add(r[0].toLowerCase()); });
  take(/\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b|\b[A-Z]{2,}[a-z]+[A-Z][A-Za-z0-9]*\b/g, (r) => {
    const lower = r[0].toLowerCase();
    if (LANGUAGE.has(lower) || c.entityWords.has(lower)) return false;
    identifiers.add(lower);
  });
  // letters and digits mixed (sha256, utf8, v18 keeps 18 as a number), ordinals, number suffixes
  take(/\b(\d+)(st|nd|rd|th)\b/gi, (r) => { addNumber(normNumber(r[1]!), true, r.index, r.index + r[0].length); });
  take(RE_NUMBER_SUFFIX, (r) => { const v = normNumber(r[1]!, r[2]); addNumber(v, true, r.index, r.index + r[0].length); });
  take(/\b[vV](\d+(?:\.\d+)*)\b/g, (r) => { addNumber(normNumber(r[1]!), true, r.index, r.index + r[0].length); });
  take(/\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{2,}\b/g, (r) => {
    const lower = r[0].toLowerCase();
    if (/^q[1-4]$/.test(lower)) { dates.add(lower); return; }
    if (c.entityWords.has(lower)) return false;
    identifiers.add(lower);
    // its digits match a number of the other prompt ("2FA" / "two-factor", "ELI5" / "like I'm five") without
    // demanding one: the token itself is compared as an identifier
    for (const d of lower.match(/\d+/g) ?? []) addNumber(normNumber(d), false);
  });
  // 9. numbers in digits
  take(RE_NUMBER, (r) => { addNumber(normNumber(r[1]!), true, r.index, r.index + r[0].length); });

  // 10. words
  const words: Array<{ w: string; lw: string; start: number; end: number; initial: boolean; cap: boolean }> = [];
  WORD_RE.lastIndex = 0;
  let wr: RegExpExecArray | null;
  let lastEnd = 0;
  while ((wr = WORD_RE.exec(m)) !== null) {
    const gap = m.slice(lastEnd, wr.index);
    const afterAbbrev = words.length > 0 && DOT_ABBREV.has(words[words.length - 1]!.lw) && /^\.[ \t]*$/.test(gap);
    const initial = words.length === 0 || (gap.length > 0 && !afterAbbrev && (INITIAL_GAP_RE.test(gap) || gap.includes('\n')));
    const w = wr[0];
    words.push({ w, lw: stripPossessive(w.toLowerCase()), start: wr.index, end: wr.index + w.length, initial, cap: CAP_RE.test(w) });
    lastEnd = wr.index + w.length;
  }
  // the full (unmasked) lower-cased word list, for presence checks and opposites
  const allLower: string[] = [];
  WORD_RE.lastIndex = 0;
  while ((wr = WORD_RE.exec(text)) !== null) allLower.push(stripPossessive(wr[0].toLowerCase()));
  const joined = ` ${allLower.join(' ').replace(/’/g, "'")} `;
  const wordSet = new Set(allLower);

  const capsWords = words.filter((x) => x.cap).length;
  const shouting = words.length >= 3 && words.every((x) => !LOWER_RE.test(x.w));
  // Title Case ("How To Reverse A List In Python"): a capitalized function word inside a sentence
  const titleCase = capsWords >= 3 && words.some((x) => x.cap && !x.initial && TITLE_FUNCTION_WORDS.has(x.lw));

  // number words, ordinal words and roman numerals
  const numerals = new Set<number>(); // indexes of roman numerals: numbers, not entities
  for (let i = 0; i < words.length; i++) {
    const lw = words[i]!.lw;
    if (!(lw in SMALL) && !(lw in SCALE)) {
      const ord = ORDINAL[lw];
      if (ord !== undefined) {
        const afterThe = i > 0 && words[i - 1]!.lw === 'the';
        if (afterThe && lw !== 'first') addNumber(String(ord), true, words[i]!.start, words[i]!.end);
        else if (lw !== 'second' || afterThe) addNumber(String(ord), false);
        continue;
      }
      // "World War II", "Henry VIII", "Part IV", "Type I": after a capitalized word or a numbering noun
      const roman = romanValue(words[i]!.w);
      if (roman > 0 && i > 0 && !words[i]!.initial && m.slice(words[i - 1]!.end, words[i]!.start).trim() === '') {
        const prev = words[i - 1]!;
        const ok = words[i]!.w.length >= 2
          ? (prev.cap && !CAP_STOP.has(prev.lw)) || NUMBERING_NOUN.has(prev.lw)
          : prev.cap && NUMBERING_NOUN.has(prev.lw);
        if (ok) {
          addNumber(String(roman), true, words[i]!.start, words[i]!.end);
          numerals.add(i);
        }
      }
      continue;
    }
    let j = i;
    const seq: number[] = [];
    while (j < words.length) {
      const x = words[j]!.lw;
      if (x in SMALL || x in SCALE) { seq.push(j); j++; continue; }
      if (x === 'and' && seq.length && j + 1 < words.length && (words[j + 1]!.lw in SMALL)) { j++; continue; }
      break;
    }
    let next = words[j]?.lw;
    const tokens = seq.map((k) => words[k]!.lw);
    // "twenty-first", "forty second": a tens word and an ordinal
    let ordinalTail = 0;
    if (next !== undefined && ORDINAL[next] !== undefined && ORDINAL[next]! < 10 && /ty$/.test(tokens[tokens.length - 1]!)) {
      ordinalTail = ORDINAL[next]!;
      seq.push(j);
      j++;
      next = words[j]?.lw;
    }
    // "six thirty pm", "seven am", "five o'clock"
    if (!ordinalTail && next !== undefined && (next === 'am' || next === 'pm' || next === 'o’clock' || next === "o'clock" || next === 'oclock')) {
      const h = SMALL[tokens[0]!] ?? -1;
      const rest = tokens.slice(1).reduce((acc, t) => acc + (SMALL[t] ?? 0), 0);
      const t = toTime(h, rest, next === 'am' || next === 'pm' ? next : undefined);
      if (t) { times.push(t); i = j; continue; }
    }
    if (tokens.length === 1 && tokens[0] === 'one' && !(next && (UNIT.has(next) || next === 'o\'clock'))) { i = j - 1; continue; }
    let total = 0;
    let current = 0;
    for (const t of tokens) {
      if (t in SMALL) current += SMALL[t]!;
      else if (t === 'hundred') current = (current || 1) * 100;
      else { total += (current || 1) * SCALE[t]!; current = 0; }
    }
    current += ordinalTail;
    if (tokens.length === 1 && tokens[0]! in SCALE && i > 0 && words[i - 1]!.lw !== 'a' && words[i - 1]!.lw !== 'one') {
      // "hundreds of", "thousands": not a number
      i = j - 1;
      continue;
    }
    const start = words[seq[0]!]!.start;
    const end = words[seq[seq.length - 1]!]!.end;
    const curWord = next !== undefined ? CURRENCY_WORD[next] : undefined;
    if (curWord) {
      amounts.add(`${curWord} ${total + current}`);
      spans.push({ kind: 'amount', value: `${curWord} ${total + current}`, start, end: words[j]!.end });
      i = j;
      continue;
    }
    addNumber(String(total + current), true, start, end);
    // "three times" = "3 times" = "3x"; "twice" = "2 times"
    if (next && UNIT.has(next) && (UNIT.get(next) !== 'x' || next === 'times')) units.add(UNIT.get(next)!);
    else if (tokens.length === 1 && (tokens[0] === 'twice' || tokens[0] === 'thrice')) units.add('x');
    i = j - 1;
  }

  for (let i = 0; i < words.length; i++) {
    if (numerals.has(i)) continue;
    const x = words[i]!;
    const lw = x.lw;
    const prev = i > 0 ? words[i - 1]!.lw : '';
    const nextW = i + 1 < words.length ? words[i + 1]!.lw : '';
    // dates
    if (lw in MONTHS) {
      const capital = x.cap;
      if (!AMBIGUOUS_MONTHS.has(lw) || (capital && !x.initial) || (capital && /^\d/.test(nextW)) || (lw.length > 3 && prev === 'in' && capital)) {
        if (lw.length > 3 || capital) { dates.add(`month ${MONTHS[lw]}`); spans.push({ kind: 'date', value: lw, start: x.start, end: x.end }); continue; }
      }
    }
    if (DATE_RELATIVE.has(lw) && DATE_PERIOD.has(nextW)) {
      dates.add(`${lw === 'previous' ? 'last' : lw === 'coming' ? 'next' : lw} ${nextW}`);
      i++;
      continue;
    }
    if (lw in DATE_WORDS) { dates.add(DATE_WORDS[lw]!); continue; }
    // negation
    if (c.negations.has(lw) || c.negations.has(x.w.toLowerCase())) { negation.push(x.w.toLowerCase()); continue; }
    // languages
    const cased = CASED_LANGUAGE[x.w];
    if (cased && (!x.initial || x.w.length === 1) && !(x.w.length === 1 && (nextW === '' && /^\s*[:.]/.test(m.slice(x.end))))) {
      const ok = x.w === 'Go' ? !x.initial || LANGUAGE_CUE.has(prev) : x.w.length > 1 || LANGUAGE_CUE.has(prev) || /^(code|program|language|library|compiler|function|script|struct|pointer|pointers|array|arrays|macro|macros|header|file|files|package|packages|dataframe|vector|plot)$/.test(nextW) || /^(in|using|learn|write|the)$/.test(prev);
      if (ok) { languages.add(cased); spans.push({ kind: 'language', value: cased, start: x.start, end: x.end }); continue; }
    }
    if (lw === 'go' && x.w === 'go' && !LANGUAGE_CUE.has(prev)) { /* the verb */ } else if (LANGUAGE.has(lw) && !(lw === 'go' && x.initial)) {
      if (lw === 'node' && !x.cap && !LANGUAGE_CUE.has(prev)) { /* a node of a tree */ } else {
        const lang = LANGUAGE.get(lw)!;
        languages.add(lang);
        spans.push({ kind: 'language', value: lang, start: x.start, end: x.end });
        continue;
      }
    }
    // units and currencies as bare words
    const bareUnit = BARE_UNIT.get(lw);
    if (bareUnit && (lw.length > 2 || x.w === lw)) { units.add(bareUnit); spans.push({ kind: 'unit', value: bareUnit, start: x.start, end: x.end }); continue; }
    const cur = CURRENCY_WORD[lw];
    if (cur && !BARE_CURRENCY_SKIP.has(lw) && (lw.length > 3 || x.w === x.w.toUpperCase())) {
      units.add(cur);
      spans.push({ kind: 'amount', value: cur, start: x.start, end: x.end });
      continue;
    }
    // entities: known names in any case, then capitalized words / acronyms
    if (c.entityWords.has(lw) && (x.cap || !CASED_ENTITY.has(lw))) {
      // extend with following capitalized words ("Amazon Web Services")
      let j = i;
      const parts = [lw];
      while (x.cap && !shouting && !titleCase && j + 1 < words.length && words[j + 1]!.cap && !words[j + 1]!.initial && !CAP_STOP.has(words[j + 1]!.lw) && !numerals.has(j + 1) && m.slice(words[j]!.end, words[j + 1]!.start).trim() === '') {
        j++;
        parts.push(words[j]!.lw);
      }
      const name = parts.join(' ');
      entities.add(name);
      spans.push({ kind: 'entity', value: name, start: x.start, end: words[j]!.end });
      i = j;
      continue;
    }
    if (shouting || titleCase) continue;
    const isAcronym = x.w.length >= 2 && x.w.length <= 6 && ACRONYM_RE.test(x.w) && !CAP_STOP.has(lw);
    const isCap = x.w.length >= 2 && x.cap && !x.initial && !CAP_STOP.has(lw);
    if (isAcronym || isCap) {
      let j = i;
      const parts = [lw];
      while (j + 1 < words.length && words[j + 1]!.cap && !CAP_STOP.has(words[j + 1]!.lw) && !words[j + 1]!.initial && !numerals.has(j + 1) && m.slice(words[j]!.end, words[j + 1]!.start).trim() === '') {
        j++;
        parts.push(words[j]!.lw);
      }
      const name = parts.join(' ');
      entities.add(name);
      spans.push({ kind: 'entity', value: name, start: x.start, end: words[j]!.end });
      i = j;
    }
  }
  // known multi-word entities
  for (const p of [...wordSet].flatMap((w) => c.entityPhrases.get(w) ?? [])) {
    if (joined.includes(` ${p} `)) {
      entities.add(p);
      for (const part of p.split(' ')) entities.delete(part);
    }
  }
  const sides = new Map<number, number>();
  const degrees = new Map<number, number>();
  for (const w of wordSet) {
    const list = c.oppForms.get(w);
    if (list) {
      for (const [i, side, deg] of list) {
        sides.set(i, (sides.get(i) ?? 0) | side);
        // "more expensive" / "less expensive" are comparatives too
        if (deg) degrees.set(i, (degrees.get(i) ?? 0) | (deg === 1 && (joined.includes(` more ${w} `) || joined.includes(` less ${w} `)) ? 2 : deg));
      }
    }
  }
  for (const w of wordSet) {
    const list = c.oppPhrases.get(w);
    if (list) for (const [phrase, i, side] of list) if (joined.includes(` ${phrase} `)) sides.set(i, (sides.get(i) ?? 0) | side);
  }

  // ordered pairs: "X to Y", "X into Y", "Y from X", "X minus Y", "X divided by Y"
  spans.sort((x, y) => x.start - y.start);
  const directed: Array<{ kind: GuardKind; from: string; to: string }> = [];
  for (let i = 0; i + 1 < spans.length; i++) {
    const s1 = spans[i]!;
    const s2 = spans[i + 1]!;
    if (s1.kind !== s2.kind || s1.value === s2.value) continue;
    const between = text.slice(s1.end, s2.start).toLowerCase().replace(/[^\p{L}\s>→-]/gu, ' ').trim().replace(/\s+/g, ' ');
    if (/^(?:(?:code|script|program|text|file|files|query|queries|function|snippet|app|data) )?(to|into|->|→|in|until|till|through|minus|divided by|over|-)$/.test(between)) {
      if (/(^| )in$/.test(between) && s1.kind !== 'unit' && s1.kind !== 'amount') continue;
      directed.push({ kind: s1.kind, from: s1.value, to: s2.value });
    } else if (between === 'from' && s1.kind !== 'number') {
      directed.push({ kind: s1.kind, from: s2.value, to: s1.value });
    }
  }

  return {
    text, joined, words: wordSet, numbers, times, dates, amounts, units, quoted, identifiers, languages, entities, negation, directed,
    sides, degrees, sequence: allLower.length <= 80 ? allLower : [],
  };
}

// ---------------------------------------------------------------------------------------------------------
// Comparison

function acronymOf(words: string[]): string {
  return words.filter((w) => !['of', 'the', 'and', 'for', 'de', '&'].includes(w)).map((w) => w[0]).join('');
}

/** Digits, number words, ordinal words and multi-letter roman numerals: the number check compares them. */
function isNumeric(w: string): boolean {
  return /^\d+$/.test(w) || w in SMALL || w in ORDINAL || (w.length >= 2 && ROMAN_LOWER_RE.test(w));
}

/** Digits, a number word or a multi-letter roman numeral as a number; NaN for other words. */
function wordNumber(w: string): number {
  if (/^\d+$/.test(w)) return Number(w);
  if (w in SMALL) return SMALL[w]!;
  return w.length >= 2 && ROMAN_LOWER_RE.test(w) ? romanValue(w.toUpperCase()) : NaN;
}

function entityPresent(c: Compiled, e: string, other: PromptFeatures): boolean {
  if (other.joined.includes(` ${e} `)) return true;
  // "the Eighth" of "Henry the Eighth": a number, compared as one
  if (isNumeric(e)) return true;
  // "SHA" of "SHA-256" in "sha256": the digits are compared as numbers
  for (const id of other.identifiers) if (id.length > e.length && id.startsWith(e) && /^\d+$/.test(id.slice(e.length))) return true;
  if (other.entities.has(e)) return true;
  const g = c.aliasOf.get(e);
  if (g !== undefined) for (const alt of c.aliasGroups[g]!) if (other.joined.includes(` ${alt} `)) return true;
  const parts = e.split(' ');
  if (parts.length === 1) {
    // acronym of words in the other prompt ("ai" <- "artificial intelligence")
    if (e.length >= 2 && e.length <= 6 && /^[\p{L}]+$/u.test(e)) {
      const ws = other.joined.trim().split(' ');
      for (let i = 0; i < ws.length; i++) {
        for (let n = e.length; n <= e.length + 2 && i + n <= ws.length; n++) {
          if (ws[i]![0] === e[0] && acronymOf(ws.slice(i, i + n)) === e) return true;
        }
      }
    }
    // plurals and close suffix variants ("apis" / "api", "austria" / "austrian", "paris" / "parisian")
    if (wordPresent(e, other)) return true;
  } else {
    const acr = acronymOf(parts);
    if (acr.length >= 2 && other.words.has(acr)) return true;
    // "World War" of "World War II" in "WW2": the digits are compared as numbers
    if (acr.length >= 2) for (const id of other.identifiers) if (id.startsWith(acr) && /^\d+$/.test(id.slice(acr.length))) return true;
    // every word present on its own ("REST API" / "RESTful APIs"); numbers in a name are compared as numbers
    // ("World War II" / "the Second World War")
    if (parts.every((p) => isNumeric(p) || wordPresent(p, other))) return true;
  }
  return false;
}

function wordPresent(e: string, other: PromptFeatures): boolean {
  if (other.words.has(e)) return true;
  // "mt" / "mount", "st" / "saint"
  const abbr = WORD_ABBREV.get(e);
  if (abbr) for (const f of abbr) if (other.words.has(f)) return true;
  for (const w of other.words) {
    if (w === `${e}s` || e === `${w}s` || w === `${e}es`) return true;
    if (e.length >= 4 && w.length >= 4 && w[0] === e[0] && ((w.startsWith(e) && w.length - e.length <= 3) || (e.startsWith(w) && e.length - w.length <= 3))) return true;
  }
  return false;
}

/**
 * Is identifier `x` of one prompt in the other? Literally (case-insensitive), through an alias group, or, for a
 * short token of letters and digits, as its spelled-out form: "sha256" / "SHA-256", "i18n" / "internationalization"
 * (numeronym), "2fa" / "two-factor auth" and "3d" / "three dimensional" (initials, digits as number words).
 */
function identifierPresent(c: Compiled, x: string, other: PromptFeatures, low: string): boolean {
  if (other.identifiers.has(x) || low.includes(x)) return true;
  const g = c.aliasOf.get(x);
  if (g !== undefined) for (const alt of c.aliasGroups[g]!) if (other.joined.includes(` ${alt} `)) return true;
  if (x.length > 8 || !/^[a-z0-9]+$/.test(x) || !/\d/.test(x) || !/[a-z]/.test(x)) return false;
  const runs = x.match(/[a-z]+|\d+/g)!;
  if (runs.length === 2 && runs.some((r) => r.length >= 2 && /[a-z]/.test(r)) && other.joined.includes(` ${runs[0]} ${runs[1]} `)) return true;
  const nm = /^([a-z])(\d{1,2})([a-z])$/.exec(x);
  if (nm) {
    const len = Number(nm[2]) + 2;
    for (const w of other.words) if (w.length === len && w[0] === nm[1] && w[w.length - 1] === nm[3]) return true;
  }
  const units = x.match(/[a-z]|\d+/g)!;
  if (units.length < 2) return false;
  const ws = other.joined.trim().split(' ');
  for (let i = 0; i + units.length <= ws.length; i++) {
    let k = 0;
    for (; k < units.length; k++) {
      const u = units[k]!;
      const w = ws[i + k]!;
      if (/\d/.test(u) ? wordNumber(w) !== Number(u) : w[0] !== u || /^\d/.test(w)) break;
    }
    if (k === units.length) return true;
  }
  return false;
}

/** How many words before a word a negation still applies to it ("not been paid", "without an internet connection"). */
const NEG_REACH = 3;

function negatedAt(c: Compiled, seq: readonly string[], k: number): boolean {
  for (let j = Math.max(0, k - NEG_REACH); j < k; j++) if (c.negations.has(seq[j]!)) return true;
  return false;
}

/** Is `stem` (or its plural) one of the words right after a negation in `f` ("not paid", "no wifi")? */
function negatesStem(c: Compiled, f: PromptFeatures, stem: string): boolean {
  const seq = f.sequence;
  for (let k = 0; k < seq.length; k++) {
    const w = seq[k]!;
    if ((w === stem || w === `${stem}s` || w === `${stem}es` || stem === `${w}s`) && negatedAt(c, seq, k)) return true;
  }
  return false;
}

const OFFLINE_STEMS = split('internet connection network wifi wi online signal data service reception');
const LESS_SKIP = new Set(split('unless nevertheless regardless doubtless endless useless careless countless bless'));

/** What the privative words of a prompt negate: "offline", "passwordless" (password), "unpaid" (paid), "sugar-free". */
function privativeStems(f: PromptFeatures): string[] {
  const stems: string[] = [];
  for (const w of f.words) {
    if (w === 'offline') stems.push(...OFFLINE_STEMS);
    else if (w.length >= 7 && w.endsWith('less') && !LESS_SKIP.has(w)) stems.push(w.slice(0, -4));
    else {
      const stem = negPrefixStem(w);
      if (stem) stems.push(stem);
    }
  }
  const seq = f.sequence;
  for (let k = 1; k < seq.length; k++) if (seq[k] === 'free') stems.push(seq[k - 1]!);
  return stems;
}

/**
 * A negation only one prompt has is not a difference when the other prompt says the same with a privative word:
 * "offline" / "without an internet connection", "passwordless" / "without a password", "unpaid" / "haven't paid".
 * Every negation word of the negated prompt must be followed (within NEG_REACH words) by what a privative negates.
 */
function negationExplained(c: Compiled, neg: PromptFeatures, other: PromptFeatures): boolean {
  const seq = neg.sequence;
  if (!seq.length) return false;
  const stems = privativeStems(other);
  if (!stems.length) return false;
  let any = false;
  for (let k = 0; k < seq.length; k++) {
    if (!c.negations.has(seq[k]!)) continue;
    any = true;
    let ok = false;
    for (let j = k + 1; j <= k + NEG_REACH && j < seq.length && !ok; j++) {
      const w = seq[j]!;
      ok = stems.some((s) => w === s || w === `${s}s` || w === `${s}es` || s === `${w}s`);
    }
    if (!ok) return false;
  }
  return any;
}

function diffSets(a: Iterable<string>, b: Iterable<string>, inB: (x: string) => boolean, inA: (x: string) => boolean): [string[], string[]] {
  const onlyA: string[] = [];
  const onlyB: string[] = [];
  for (const x of a) if (!inB(x)) onlyA.push(x);
  for (const x of b) if (!inA(x)) onlyB.push(x);
  return [onlyA, onlyB];
}

function timeCandidates(t: string): number[] {
  const [hs, rest] = t.split(':') as [string, string];
  const h = +hs;
  const min = +rest.slice(0, 2);
  const mer = rest.slice(2);
  if (mer === 'a') return [(h % 12) * 60 + min];
  if (mer === 'p') return [((h % 12) + 12) * 60 + min];
  if (h === 24) return [min];
  if (h > 12 || h === 0) return [h * 60 + min];
  return [(h % 12) * 60 + min, ((h % 12) + 12) * 60 + min];
}

function timeMatches(t: string, others: string[]): boolean {
  const c1 = timeCandidates(t);
  return others.some((o) => timeCandidates(o).some((x) => c1.includes(x)));
}

const NEG_PREFIX = /^(un|non|dis|in|im|il|ir)-?(.+)$/;
const IN_STEM = /(able|ible|ent|ant|ive|id|al|ure|ect|ete|ite|ular|ed|ing)$/;
const PREFIX_SKIP = new Set(split(
  'discount display discuss discover dispatch dish disk district distance distribute disco dismiss disposal ' +
  'undergo understand universal unique union united until unless unit units untitled unpack unzip uninstall ' +
  'install income import inform insert instance inside interest invent invest inline indent index inherit ' +
  'improve impact imply impress import',
));

/** "unsafe" -> "safe", "invalid" -> "valid"; undefined for words that are not a negative prefix plus a word. */
function negPrefixStem(w: string): string | undefined {
  if (w.length < 6 || PREFIX_SKIP.has(w)) return undefined;
  const m = NEG_PREFIX.exec(w);
  if (!m) return undefined;
  const stem = m[2]!;
  if (stem.length < 4 || (m[1]!.startsWith('i') && !IN_STEM.test(stem))) return undefined;
  return stem;
}

/**
 * "safe" vs "unsafe", "valid" vs "invalid", "like" vs "dislike": one prompt has the word, the other its negation.
 * Not when the word is itself negated ("not valid" = "invalid", "haven't paid" = "unpaid").
 */
function prefixOpposites(c: Compiled, a: PromptFeatures, b: PromptFeatures, reasons: GuardReason[], flipped: boolean): void {
  for (const w of a.words) {
    const stem = negPrefixStem(w);
    if (!stem) continue;
    if (b.words.has(stem) && !b.words.has(w) && !a.words.has(stem) && !(a.negation.length === 0 && negatesStem(c, b, stem))) {
      reasons.push(flipped ? { kind: 'opposite', a: [stem], b: [w] } : { kind: 'opposite', a: [w], b: [stem] });
    }
  }
}

/**
 * The same prompt with one word exchanged for its opposite, for opposites too common to count on their own:
 * "Turn the music up" / "... down", "Turn the lights on in the kitchen" / "... off ...".
 */
function oneWordSwap(c: Compiled, a: PromptFeatures, b: PromptFeatures, reasons: GuardReason[]): void {
  const sa = a.sequence;
  const sb = b.sequence;
  if (!sa.length || sa.length !== sb.length) return;
  let k = -1;
  for (let i = 0; i < sa.length; i++) {
    if (sa[i] === sb[i]) continue;
    if (k >= 0) return;
    k = i;
  }
  if (k >= 0 && c.swapOnly.has(`${sa[k]}|${sb[k]}`)) reasons.push({ kind: 'opposite', a: [sa[k]!], b: [sb[k]!] });
}

const SWAP_CONNECTORS = new Set(['to', 'into', 'than', 'but', 'from', 'over', 'versus']);
const FUNCTION_WORDS = new Set(split(
  'a an the this that these those my your our its their some any of in on at for by with as is are was were be ' +
  'do does did how what why when where which who can could would should will i me you we it please',
));

/**
 * The same words exchanged across a connector: "convert a JSON string to an object" vs "convert an object to
 * a JSON string", "pass locally but fail in CI" vs "fail locally but pass in CI", "X faster than Y" vs
 * "Y faster than X". Only when the connector occurs exactly once in each prompt.
 */
function swapped(a: PromptFeatures, b: PromptFeatures, reasons: GuardReason[]): void {
  if (!a.sequence.length || !b.sequence.length) return;
  for (const conn of SWAP_CONNECTORS) {
    const ia = a.sequence.indexOf(conn);
    if (ia < 0 || a.sequence.indexOf(conn, ia + 1) >= 0) continue;
    const ib = b.sequence.indexOf(conn);
    if (ib < 0 || b.sequence.indexOf(conn, ib + 1) >= 0) continue;
    const content = (ws: readonly string[]) => new Set(ws.filter((w) => !FUNCTION_WORDS.has(w) && !SWAP_CONNECTORS.has(w)));
    const la = content(a.sequence.slice(0, ia));
    const ra = content(a.sequence.slice(ia + 1));
    const lb = content(b.sequence.slice(0, ib));
    const rb = content(b.sequence.slice(ib + 1));
    let diff = 0;
    for (const w of new Set([...la, ...ra])) if (!lb.has(w) && !rb.has(w)) diff++;
    for (const w of new Set([...lb, ...rb])) if (!la.has(w) && !ra.has(w)) diff++;
    if (diff > 1) continue; // reworded, not the same words exchanged
    const movedRight = [...la].filter((w) => rb.has(w) && !lb.has(w) && !ra.has(w));
    const movedLeft = [...ra].filter((w) => lb.has(w) && !rb.has(w) && !la.has(w));
    if (movedRight.length && movedLeft.length) {
      reasons.push({ kind: 'opposite', a: [`${movedRight.join(' ')} ${conn} ${movedLeft.join(' ')}`], b: [`${movedLeft.join(' ')} ${conn} ${movedRight.join(' ')}`], reversed: true });
      return;
    }
  }
}

function compareWith(c: Compiled, a: PromptFeatures, b: PromptFeatures): GuardResult {
  const reasons: GuardReason[] = [];
  const on = (k: GuardKind) => !c.disabled.has(k);
  const push = (kind: GuardKind, onlyA: string[], onlyB: string[]) => {
    if (onlyA.length || onlyB.length) reasons.push({ kind, a: onlyA, b: onlyB });
  };

  if (on('number')) {
    const onlyA = [...a.numbers].filter(([v, strong]) => strong && !b.numbers.has(v)).map(([v]) => v);
    const onlyB = [...b.numbers].filter(([v, strong]) => strong && !a.numbers.has(v)).map(([v]) => v);
    push('number', onlyA, onlyB);
  }
  if (on('time')) push('time', a.times.filter((t) => !timeMatches(t, b.times)), b.times.filter((t) => !timeMatches(t, a.times)));
  if (on('date')) push('date', ...diffSets(a.dates, b.dates, (x) => b.dates.has(x), (x) => a.dates.has(x)));
  if (on('amount')) push('amount', ...diffSets(a.amounts, b.amounts, (x) => b.amounts.has(x), (x) => a.amounts.has(x)));
  if (on('unit')) push('unit', ...diffSets(a.units, b.units, (x) => b.units.has(x), (x) => a.units.has(x)));
  if (on('quoted')) {
    const norm = (s: string) => s.replace(/\s+/g, ' ');
    push('quoted', ...diffSets(a.quoted, b.quoted, (x) => b.quoted.has(x) || norm(b.text).includes(x), (x) => a.quoted.has(x) || norm(a.text).includes(x)));
  }
  if (on('identifier')) {
    const lowA = a.text.toLowerCase();
    const lowB = b.text.toLowerCase();
    push('identifier', ...diffSets(a.identifiers, b.identifiers, (x) => identifierPresent(c, x, b, lowB), (x) => identifierPresent(c, x, a, lowA)));
  }
  if (on('language')) push('language', ...diffSets(a.languages, b.languages, (x) => b.languages.has(x), (x) => a.languages.has(x)));
  if (on('entity')) push('entity', ...diffSets(a.entities, b.entities, (x) => entityPresent(c, x, b), (x) => entityPresent(c, x, a)));
  if (on('negation') && (a.negation.length > 0) !== (b.negation.length > 0)) {
    const [neg, other] = a.negation.length > 0 ? [a, b] : [b, a];
    if (!negationExplained(c, neg, other)) push('negation', a.negation, b.negation);
  }
  if (on('opposite')) {
    for (const [i, sa] of a.sides) {
      if (sa === 3) continue;
      const sb = b.sides.get(i);
      if (sb === undefined || sb === 3 || sb === sa) continue;
      // a base form and a comparative of its opposite: "my query is slow" / "make my query faster"
      const da = a.degrees.get(i);
      const db = b.degrees.get(i);
      if ((da === 1 && db === 2) || (da === 2 && db === 1)) continue;
      const [x, y] = c.oppNames[i]!;
      // "not valid" / "invalid": the side written as a negated stem is the prefixed side
      if (negPrefixStem(y) === x && (sa === 2 ? a : b).negation.length === 0 && negatesStem(c, sa === 1 ? a : b, x)) continue;
      if (negPrefixStem(x) === y && (sa === 1 ? a : b).negation.length === 0 && negatesStem(c, sa === 2 ? a : b, y)) continue;
      reasons.push({ kind: 'opposite', a: [sa === 1 ? x : y], b: [sb === 1 ? x : y] });
    }
    prefixOpposites(c, a, b, reasons, false);
    prefixOpposites(c, b, a, reasons, true);
    swapped(a, b, reasons);
    oneWordSwap(c, a, b, reasons);
  }
  // reversed direction of the same features ("miles to km" vs "km to miles")
  for (const d of a.directed) {
    if (!on(d.kind)) continue;
    if (b.directed.some((e) => e.kind === d.kind && e.from === d.to && e.to === d.from) && !b.directed.some((e) => e.kind === d.kind && e.from === d.from && e.to === d.to)) {
      reasons.push({ kind: d.kind, a: [`${d.from} -> ${d.to}`], b: [`${d.to} -> ${d.from}`], reversed: true });
    }
  }
  return { veto: reasons.length > 0, reasons };
}

// ---------------------------------------------------------------------------------------------------------
// API

/** Builds a guard with the options compiled once. */
export function createNearMissGuard(options: NearMissGuardOptions = {}): NearMissGuard {
  const c = compile(options);
  const guard = ((a: string, b: string) => compareWith(c, extractWith(c, a), extractWith(c, b))) as NearMissGuard;
  guard.extract = (text: string) => extractWith(c, text);
  guard.compare = (a: PromptFeatures, b: PromptFeatures) => compareWith(c, a, b);
  return guard;
}

let defaultGuard: NearMissGuard | undefined;
const guards = new WeakMap<NearMissGuardOptions, NearMissGuard>();

/**
 * Should a semantic hit between prompts `a` and `b` be vetoed? `veto` is true when they differ in a feature
 * that makes them different questions; `reasons` says which.
 */
export function nearMissGuard(a: string, b: string, options?: NearMissGuardOptions): GuardResult {
  let g: NearMissGuard | undefined;
  if (!options) g = defaultGuard ??= createNearMissGuard();
  else {
    g = guards.get(options);
    if (!g) guards.set(options, (g = createNearMissGuard(options)));
  }
  return g(a, b);
}
