import { describe, expect, it } from 'vitest';
import { createNearMissGuard, GUARD_KINDS, nearMissGuard, type GuardKind } from '../../src/semantic/near-miss-guard.js';

type Row = [a: string, b: string, kind?: GuardKind];

const kindsOf = (a: string, b: string) => nearMissGuard(a, b).reasons.map((r) => r.kind);

function expectVeto(rows: Row[]) {
  for (const [a, b, kind] of rows) {
    const r = nearMissGuard(a, b);
    expect(r.veto, `${a} | ${b}`).toBe(true);
    if (kind) expect(r.reasons.map((x) => x.kind), `${a} | ${b}`).toContain(kind);
    // symmetric
    expect(nearMissGuard(b, a).veto, `${b} | ${a}`).toBe(true);
  }
}

function expectPass(rows: Row[]) {
  for (const [a, b] of rows) {
    const r = nearMissGuard(a, b);
    expect(r, `${a} | ${b}`).toEqual({ veto: false, reasons: [] });
    expect(nearMissGuard(b, a).veto, `${b} | ${a}`).toBe(false);
  }
}

describe('nearMissGuard: paraphrases pass', () => {
  it('free rewording without salient differences is not vetoed', () => {
    expectPass([
      ['What is AI?', 'Can you explain artificial intelligence?'],
      ['How do I reverse a list in Python?', 'In Python, how can a list be reversed?'],
      ['What is the capital of France?', "Which city is France's capital?"],
      ['Book a table for two at 7pm tonight', 'Reserve a table for 2 people tonight at 7 pm'],
      ['Convert 100 USD to EUR', 'How much is $100 in euros?'],
      ['What is 15% of 80?', 'Calculate fifteen percent of eighty'],
      ['Translate "good morning" into Spanish', 'How do you say "good morning" in Spanish?'],
      ['What does the `useEffect` hook do in React?', "Explain React's `useEffect` hook"],
      ['What is a REST API?', 'Explain what RESTful APIs are'],
      ['What is machine learning?', 'Explain ML in simple terms'],
      ['How to make an HTTP request in Node.js?', 'Node.js: how do I send an HTTP request?'],
      ['How do I install Docker on Ubuntu?', 'What are the steps to set up Docker on an Ubuntu machine?'],
      ['Send $50 to Bob', 'Send 50 dollars to Bob'],
      ['What is the capital of Austria?', "What is Austria's capital city?"],
      ['Which foods are not safe for dogs?', "Which foods shouldn't dogs eat?"],
    ]);
  });

  it('numbers: same set in another order or spelling is the same', () => {
    expectPass([
      ['What is the sum of 3 and 5?', 'Add 5 and 3'],
      ['Merge 2 lists', 'Merge two lists'],
      ['Allocate 1,000 workers', 'Allocate 1000 workers'],
      ['Budget of 10k', 'Budget of 10000'],
      ['Budget of 10k', 'Budget of ten thousand'],
      ['Wait one hour', 'Wait 1 hour'],
      ['Which one is faster, a or b?', 'Which is faster: a or b?'],
      ['Get the 3rd item', 'Get the third item'],
    ]);
  });

  it('times: "6:30" = "6:30am" = "6:30 a.m.", "18:30" = "6:30 pm", word times', () => {
    expectPass([
      ['Set an alarm for 6:30', 'Set an alarm for 6:30am'],
      ['Set an alarm for 6:30 a.m.', 'Set an alarm for 6:30am'],
      ['Meeting at 18:30', 'Meeting at 6:30 pm'],
      ['Lunch at noon', 'Lunch at 12:00 pm'],
      ['Wake me at six thirty pm', 'Wake me at 6:30pm'],
      ['Call at 7 PM', 'Call at 7pm'],
    ]);
  });

  it('case and punctuation differences are not differences', () => {
    expectPass([
      ['HOW DO I REVERSE A LIST IN PYTHON', 'how do i reverse a list in python?'],
      ['How Do I Deploy To Heroku', 'how do I deploy to heroku?'],
      ['weather in paris tomorrow', 'Weather in Paris tomorrow!!!'],
      ['How do I use getElementById?', 'how do i use getelementbyid'],
    ]);
  });

  it('entities: acronyms, aliases and suffix variants count as present (NYC = New York, by design)', () => {
    expectPass([
      ['Weather in NYC tomorrow', 'Weather in New York tomorrow'],
      ['Weather in NYC tomorrow', 'Weather in New York City tomorrow'],
      ['Deploy to AWS', 'Deploy to Amazon Web Services'],
      ['Flights to the US', 'Flights to the USA'],
      ['Austrian food', 'Food from Austria'],
      ['How does k8s scheduling work?', 'How does Kubernetes scheduling work?'],
    ]);
  });
});

describe('nearMissGuard: near-misses are vetoed, every kind', () => {
  it('number', () => {
    expectVeto([
      ['How do I merge two dicts in Python?', 'How do I merge three dicts in Python?', 'number'],
      ['Give me 5 ideas', 'Give me 10 ideas', 'number'],
      ["What's new in Python 3.12?", "What's new in Python 3.11?", 'number'],
      ['What is 7 minus 3?', 'What is 3 minus 7?', 'number'],
      ['Count from 3 to 7', 'Count from 7 to 3', 'number'],
      ['What does HTTP 404 mean?', 'What does HTTP 403 mean?', 'number'],
      ['Python 3.10 features', 'Python 3.1 features', 'number'],
    ]);
  });

  it('time', () => {
    expectVeto([
      ['Set an alarm for 6:30 am', 'Set an alarm for 7:30 am', 'time'],
      ['Remind me at 5 pm', 'Remind me at 5 am', 'time'],
      ['Meeting at 18:30', 'Meeting at 6:30 am', 'time'],
      ['Run the job at 02:00', 'Run the job at 03:00', 'time'],
    ]);
  });

  it('date', () => {
    expectVeto([
      ['Book a flight on March 3', 'Book a flight on March 4', 'date'],
      ['Book a flight on March 3rd', 'Book a flight on the 3rd of April', 'date'],
      ['Show my calendar for Monday', 'Show my calendar for Tuesday', 'date'],
      ['Forecast for tomorrow', 'Forecast for today', 'date'],
      ['Sales for Q1 2024', 'Sales for Q2 2024', 'date'],
      ['Dentist next week', 'Dentist next month', 'date'],
      ['Events on 2023-05-01', 'Events on 2023-06-01', 'date'],
      ['Trips in May', 'Trips in June', 'date'],
    ]);
    expectPass([
      ['When does the store open on Sunday?', 'What time does the store open on Sundays?'],
      ['You may book on March 3', 'Book on 3 March'],
    ]);
  });

  it('amount', () => {
    expectVeto([
      ['Convert $100 to euros', 'Convert $1000 to euros', 'amount'],
      ['Transfer 200 euros', 'Transfer 200 dollars', 'amount'],
      ["What's a 20% tip on $85?", "What's an 18% tip on $85?", 'amount'],
      ['Send €50', 'Send £50', 'amount'],
      ['Salary of 60k', 'Salary of 90k', 'number'],
    ]);
  });

  it('unit', () => {
    expectVeto([
      ['Walk 5 km', 'Walk 5 miles', 'unit'],
      ['Set the font size to 16px', 'Set the font size to 16pt', 'unit'],
      ['Upload limit of 10 MB', 'Upload limit of 10 GB', 'unit'],
      ['Timeout of 30 seconds', 'Timeout of 30 milliseconds', 'unit'],
      ['Convert 5 miles to km', 'Convert 5 km to miles', 'unit'],
      ['What is 30 degrees Celsius in Fahrenheit?', 'What is 30 degrees Fahrenheit in Celsius?', 'unit'],
    ]);
  });

  it('quoted', () => {
    expectVeto([
      ['Translate "good morning" into Spanish', 'Translate "good night" into Spanish', 'quoted'],
      ["Find files containing 'TODO'", "Find files containing 'FIXME'", 'quoted'],
      ['Search for “invoice”', 'Search for “receipt”', 'quoted'],
      ['Fix this: ```let x = 1```', 'Fix this: ```let x = 2```', 'quoted'],
    ]);
    // an apostrophe is not a quote
    expectPass([["Don't panic, it's fine", "Don't panic, it's fine."]]);
  });

  it('identifier', () => {
    expectVeto([
      ['What does `useEffect` do?', 'What does `useMemo` do?', 'identifier'],
      ['map() vs forEach()', 'map() vs filter()', 'identifier'],
      ['Read package.json in Node', 'Read tsconfig.json in Node', 'identifier'],
      ['Why does Array.prototype.sort mutate?', 'Why does Array.prototype.reverse mutate?', 'identifier'],
      ['Set MAX_CONNECTIONS', 'Set MIN_CONNECTIONS', 'identifier'],
      ['What does git push --force do?', 'What does git push --force-with-lease do?', 'identifier'],
      ['Explain snake_case_name', 'Explain other_case_name', 'identifier'],
      ['Compute sha256 of a file', 'Compute md5 of a file', 'identifier'],
    ]);
  });

  it('language', () => {
    expectVeto([
      ['Reverse a string in Python', 'Reverse a string in JavaScript', 'language'],
      ['Read a CSV file in Rust', 'Read a CSV file in Go', 'language'],
      ['What is the C equivalent of a dict?', 'What is the C++ equivalent of a dict?', 'language'],
      ['Translate "thank you" into French', 'Translate "thank you" into German', 'language'],
      ['Translate from English to French', 'Translate from French to English', 'language'],
      ['Connect to MySQL', 'Connect to PostgreSQL', 'language'],
    ]);
    // "go" the verb is not the language
    expectPass([['Where do I go to reset my password?', 'Where can I go to reset my password']]);
  });

  it('entity', () => {
    expectVeto([
      ['What is the capital of Austria?', 'What is the capital of Australia?', 'entity'],
      ['capital of austria', 'capital of australia', 'entity'],
      ['Deploy a Node app to AWS', 'Deploy a Node app to Azure', 'entity'],
      ['Who founded Microsoft?', 'Who founded Apple?', 'entity'],
      ["What is Elon Musk's net worth?", "What is Jeff Bezos's net worth?", 'entity'],
      ['Weather in Paris today', 'Weather in Paris, Texas today', 'entity'],
      ['Flights from London to Paris', 'Flights from Paris to London', 'entity'],
    ]);
  });

  it('negation', () => {
    expectVeto([
      ['Why does my code compile?', "Why doesn't my code compile?", 'negation'],
      ['Which foods are safe for dogs?', 'Which foods are not safe for dogs?', 'negation'],
      ['Run tests with coverage', 'Run tests without coverage', 'negation'],
      ['Flights that have layovers', 'Flights that have no layovers', 'negation'],
      ['Should I ever rebase?', 'Should I never rebase?', 'negation'],
    ]);
  });

  it('opposite (pairs, inflections, phrases, un-/in- prefixes, swaps across "to"/"than"/"but")', () => {
    expectVeto([
      ['Sort the array ascending', 'Sort the array descending', 'opposite'],
      ['How do I enable 2FA?', 'How do I disable 2FA?', 'opposite'],
      ['Find the max value', 'Find the min value', 'opposite'],
      ['Increasing the batch size', 'Decreasing the batch size', 'opposite'],
      ['Get the first element', 'Get the last element', 'opposite'],
      ['Add a user to a group', 'Remove a user from a group', 'opposite'],
      ['Is it a good time to buy Tesla stock?', 'Is it a good time to sell Tesla stock?', 'opposite'],
      ['Turn on the lights', 'Turn off the lights', 'opposite'],
      ['Zoom in on the map', 'Zoom out on the map', 'opposite'],
      ['Round up to the nearest 10', 'Round down to the nearest 10', 'opposite'],
      ['Is it safe to delete node_modules?', 'Is it unsafe to delete node_modules?', 'opposite'],
      ['Is this email valid?', 'Is this email invalid?', 'opposite'],
      ['Convert a JSON string to an object', 'Convert an object to a JSON string', 'opposite'],
      ['Is Python faster than Java?', 'Is Java faster than Python?', 'opposite'],
      ['Why do tests pass locally but fail in CI?', 'Why do tests fail locally but pass in CI?', 'opposite'],
    ]);
    // both sides in one prompt: no veto from that pair
    expectPass([['Should I buy or sell now?', 'Should I sell or buy now?']]);
  });

  it('reasons name the kind and the differing tokens', () => {
    expect(nearMissGuard('Set an alarm for 6:30 am', 'Set an alarm for 7:30 am')).toEqual({
      veto: true,
      reasons: [{ kind: 'time', a: ['6:30a'], b: ['7:30a'] }],
    });
    expect(nearMissGuard('enable 2FA', 'disable 2FA').reasons).toEqual([{ kind: 'opposite', a: ['enable'], b: ['disable'] }]);
    expect(kindsOf('capital of Austria', 'capital of Australia')).toEqual(['entity']);
  });
});

describe('nearMissGuard: same thing said differently (generic causes of wrong vetoes)', () => {
  it('acronyms and abbreviations match their expansion; a different acronym is still vetoed', () => {
    expectPass([
      ['How do I turn on 2FA?', 'How do I set up two-factor authentication?'],
      ['ELI5: quantum computing', "Explain quantum computing like I'm five"],
      ['What is i18n?', 'What is internationalization?'],
      ['Test my app for a11y', 'Test the accessibility of my app'],
      ['What is SHA-256?', 'what is sha256'],
      ['What is 3D printing?', 'What is three dimensional printing?'],
      ['When did WW2 end?', 'When did World War II end?'],
      ['How tall is Mt. Fuji?', 'What is the height of Mount Fuji?'],
      ['Best time to visit St. Petersburg', 'Best time to visit Saint Petersburg'],
    ]);
    expectVeto([
      ['What is 3D printing?', 'What is 2D printing?', 'identifier'],
      ['What is i18n?', 'What is l10n?', 'identifier'],
      ['What is SHA-256?', 'What is SHA-512?', 'number'],
      ['When did WW1 end?', 'When did World War II end?', 'number'],
      ['How tall is Mt. Fuji?', 'How tall is Mt. Everest?', 'entity'],
      ['Things to do in St. Louis', 'Things to do in St. Paul', 'entity'],
    ]);
  });

  it('ordinal words, roman numerals and digits are the same number', () => {
    expectPass([
      ['When did World War II end?', 'What year did the Second World War end?'],
      ['What caused World War I?', 'Why did the First World War start?'],
      ['How many wives did Henry VIII have?', 'How many wives did Henry the Eighth have?'],
      ['Who was the 16th president?', 'Who was the sixteenth president?'],
      ['Who was the 1st person on the moon?', 'Who was the first person on the Moon?'],
      ['Art of the twenty-first century', 'Art of the 21st century'],
      ['Type 1 diabetes symptoms', 'Type I diabetes symptoms'],
      ['Summary of Part IV', 'Summary of part 4'],
    ]);
    expectVeto([
      ['What caused World War I?', 'What caused World War II?', 'number'],
      ['Who succeeded Henry VII?', 'Who succeeded Henry VIII?', 'number'],
      ['Who was the 16th president?', 'Who was the sixth president?', 'number'],
      ['Art of the twenty-first century', 'Art of the 22nd century', 'number'],
      ['Type I diabetes symptoms', 'Type II diabetes symptoms', 'number'],
      ["What's the first thing to learn?", "What's the second thing to learn?", 'number'],
      ['Wait 2 seconds', 'Wait a second', 'number'],
    ]);
    // "first" matches a 1 but does not demand one
    expectPass([['List the first 10 primes', 'List 10 primes']]);
  });

  it('"twice", "two times", "2 times" and "2x" are the same', () => {
    expectPass([
      ['Do it twice', 'Do it 2 times'],
      ['Do it three times', 'Do it 3 times'],
      ['Is Rust 3x faster than Go?', 'Is Rust three times faster than Go?'],
    ]);
    expectVeto([['Do it twice', 'Do it three times', 'number']]);
  });

  it('a base form and a comparative of its opposite (problem vs goal) are not opposites; same degree still is', () => {
    expectPass([
      ['How can I speed up my slow SQL query?', 'How do I make my SQL query faster?'],
      ['Our AWS bill is too expensive', 'How can we make our AWS bill cheaper?'],
      ['This puzzle is too hard', 'How do I make this puzzle easier?'],
    ]);
    expectVeto([
      ['Is Go faster than Rust?', 'Is Go slower than Rust?', 'opposite'],
      ['Which is cheaper, renting or buying?', 'Which is more expensive, renting or buying?', 'opposite'],
      ['Find cheap hotels in Rome', 'Find expensive hotels in Rome', 'opposite'],
      ['Which sorting algorithm is the fastest?', 'Which sorting algorithm is the slowest?', 'opposite'],
      ['Why is my query slow?', 'Why is my query fast?', 'opposite'],
    ]);
  });

  it('synonyms of capitalized common nouns are not different entities', () => {
    expectPass([
      ["What's the tallest mountain in the world?", 'Which mountain is the highest on Earth?'],
      ['Remind me to call Mom tomorrow', 'Remind me to call my mother tomorrow'],
      ['Call Dad', 'Call my father'],
    ]);
    expectVeto([['Remind me to call Mom', 'Remind me to call Dad', 'entity']]);
  });

  it('a negation said with a privative word ("offline", "-less", "un-", "-free") is not a difference', () => {
    expectPass([
      ['Can I use the app offline?', 'Does the app work without an internet connection?'],
      ['Do downloaded episodes play offline?', 'Can I watch downloaded episodes with no wifi?'],
      ['Can I log in without a password?', 'Do you support passwordless login?'],
      ['Which of my invoices are unpaid?', "Show me the invoices I haven't paid"],
      ['Why is this JSON not valid?', 'Why is this JSON invalid?'],
      ['Which snacks are sugar-free?', 'Which snacks have no sugar?'],
    ]);
    expectVeto([
      ['Can I use the app offline?', 'Can I use the app without an account?', 'negation'],
      ['Can I play this game offline?', 'Can I play this game online?', 'opposite'],
      ['Show invoices that are paid', 'Show invoices that are unpaid', 'opposite'],
      ['Why is this JSON valid?', 'Why is this JSON not valid?', 'negation'],
      ["Why can't I unsubscribe?", "Why can't I subscribe?", 'opposite'],
      ['Show unpaid invoices', 'Show invoices that are not unpaid', 'negation'],
    ]);
  });

  it('common opposites ("up"/"down", "on"/"off", "start"/"end") are vetoed as a one-word swap', () => {
    expectVeto([
      ['Turn the music up', 'Turn the music down', 'opposite'],
      ['Turn the lights on in the kitchen', 'Turn the lights off in the kitchen', 'opposite'],
      ['Round 3.7 up to the nearest integer', 'Round 3.7 down to the nearest integer', 'opposite'],
      ['Show the start of the file', 'Show the end of the file', 'opposite'],
    ]);
    // alone, outside a one-word swap, they are not features
    expectPass([['Turn the music up', 'Make the music louder, turn it up']]);
  });

  it('words that are names of Object members ("constructor") are plain words', () => {
    expectPass([
      ['What is a constructor in Java?', 'Explain Java constructors'],
      ['Why is the constructor called twice?', 'Why is the constructor called 2 times?'],
    ]);
  });
});

describe('options', () => {
  it('disable turns kinds off', () => {
    const g = createNearMissGuard({ disable: ['number', 'opposite'] });
    expect(g('Give me 5 ideas', 'Give me 10 ideas').veto).toBe(false);
    expect(g('enable 2FA', 'disable 2FA').veto).toBe(false);
    expect(g('Reverse in Python', 'Reverse in Rust').veto).toBe(true);
    const none = createNearMissGuard({ disable: GUARD_KINDS });
    expect(none('Set an alarm for 6:30 am', 'Set an alarm for 7:30 am').veto).toBe(false);
  });

  it('extra opposite pairs, entities, aliases and negations', () => {
    expect(nearMissGuard('deploy to staging', 'deploy to production').veto).toBe(false);
    const opts = {
      opposites: [['staging', 'production']] as Array<[string, string]>,
      entities: ['acme widget'],
      aliases: [['gh', 'github']],
      negations: ['sans'],
    };
    expect(nearMissGuard('deploy to staging', 'deploy to production', opts).reasons).toEqual([
      { kind: 'opposite', a: ['staging'], b: ['production'] },
    ]);
    expect(nearMissGuard('price of the acme widget', 'price of the thing', opts).reasons.map((r) => r.kind)).toEqual(['entity']);
    expect(nearMissGuard('Open a PR on GH', 'Open a PR on GitHub', opts).veto).toBe(false);
    expect(nearMissGuard('coffee sans sugar', 'coffee with sugar', opts).reasons.map((r) => r.kind)).toContain('negation');
  });

  it('extract once, compare many', () => {
    const g = createNearMissGuard();
    const q = g.extract('Set an alarm for 6:30');
    expect(g.compare(q, g.extract('Set an alarm for 6:30 am')).veto).toBe(false);
    expect(g.compare(q, g.extract('Set an alarm for 7:30 am')).veto).toBe(true);
  });
});

describe('cost and hostile input', () => {
  it('10k pairs finish (timing sanity, not a speed assertion; see bench/semantic)', () => {
    const pairs: Array<[string, string]> = [
      ['Set an alarm for 6:30 am', 'Set an alarm for 7:30 am'],
      ['How do I reverse a list in Python?', 'In Python, how can a list be reversed?'],
      ['Convert $100 to euros on March 3', 'How much is $100 in euros on March 3rd?'],
      ['What does `useEffect` do in React?', 'Explain the React useEffect hook'],
    ];
    // Speed is measured in bench/semantic/guard-eval.mjs; here: 10k calls give the same verdicts every time.
    let vetoes = 0;
    for (let i = 0; i < 10_000; i++) if (nearMissGuard(...pairs[i % pairs.length]!).veto) vetoes++;
    expect(vetoes).toBe(2_500);
  });

  it('empty, whitespace, unicode, emoji, control characters', () => {
    expect(nearMissGuard('', '')).toEqual({ veto: false, reasons: [] });
    expect(nearMissGuard('   ', '\n\t')).toEqual({ veto: false, reasons: [] });
    expect(nearMissGuard('', 'Set an alarm for 6:30').veto).toBe(true);
    expect(nearMissGuard('Quelle est la capitale de l’Autriche ?', 'Quelle est la capitale de l’Australie ?').veto).toBe(true);
    expect(nearMissGuard('東京の天気は？ 🌧️', '東京の天気は？ 🌧️').veto).toBe(false);
    expect(nearMissGuard('Ｓｅｔ ａｎ ａｌａｒｍ ｆｏｒ ６：３０', 'Set an alarm for 6:30').veto).toBe(false); // NFKC
    expect(nearMissGuard('a\u0000b\u202e', 'a\u0000b\u202e').veto).toBe(false);
    expect(() => nearMissGuard(undefined as unknown as string, null as unknown as string)).not.toThrow();
  });

  it('a 100 KB prompt is handled quickly and without pathological regex backtracking', () => {
    const big = 'How do I reverse a list in Python? '.repeat(3_000); // ~105 KB
    const nasty = `${'a'.repeat(50_000)}_${'1'.repeat(30_000)}${'"'.repeat(10_000)}${'`'.repeat(10_000)}`;
    // Their cost is in bench/semantic/guard-eval.mjs; here they must finish (the test timeout) with verdicts.
    expect(nearMissGuard(big, big).veto).toBe(false);
    expect(nearMissGuard(big, `${big} in Rust`).veto).toBe(true); // the tail is kept
    expect(typeof nearMissGuard(nasty, big).veto).toBe('boolean');
    expect(typeof nearMissGuard(`${'('.repeat(50_000)}${'9,'.repeat(25_000)}`, nasty).veto).toBe('boolean');
  });
});
