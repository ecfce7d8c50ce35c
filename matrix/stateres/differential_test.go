package stateres

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// Differential tests against gomatrixserverlib: random rooms whose DAG forks
// and merges, with membership, power levels, join rules and topic events.
// At every merge (of two or three branches) both implementations resolve
// the branches' states, with the same auth rules (gomatrixserverlib's), and
// must agree, except where the model of gomatrixserverlib's known
// departures from the spec (emulation_test.go) explains the difference.

var (
	diffSeeds = flag.Int("stateres.seeds", 100, "random rooms per room version in the differential tests")
	diffSeed  = flag.Int64("stateres.seed", -1, "run only this seed in the differential tests")
	explain   = flag.String("stateres.explain", "", "print the cases that need this quirk to agree with gomatrixserverlib")
)

type dagGen struct {
	r       *testRoom
	rng     *rand.Rand
	users   []string
	allowed AllowedFunc
	// alsoAllowed, when set, must allow an event too: the DAG then holds
	// only events that both auth rules accept where they are sent.
	alsoAllowed AllowedFunc
	n           int
}

func newDAGGen(t testing.TB, v event.RoomVersion, seed int64) (*dagGen, *branch) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	users := []string{alice, bob, charlie, dave, eve}
	levels := map[string]int{}
	for _, u := range users[1:] {
		levels[u] = []int{0, 0, 50, 100}[rng.IntN(4)]
	}
	r, b := newRoom(t, v, levels)
	g := &dagGen{r: r, rng: rng, users: users, allowed: gmslAllowed(t)}
	for _, u := range users[1:] {
		if rng.IntN(4) != 0 {
			g.try(b, u, "m.room.member", u, member("join"))
		}
	}
	return g, b
}

// try builds an event on the branch and keeps it if the auth rules allow it
// against the branch's state, as a server would.
func (g *dagGen) try(b *branch, sender, typ, stateKey string, content map[string]any) {
	g.n++
	short := strings.TrimPrefix(strings.SplitN(sender, ":", 2)[0], "@")
	id := fmt.Sprintf("$%d-%s-%s", g.n, short, strings.TrimPrefix(typ, "m.room."))
	// Clocks are skewed: timestamps only roughly follow the DAG, with ties.
	g.r.clock = int64(g.n*3 + g.rng.IntN(12))
	ev := b.build(id, sender, typ, &stateKey, content)
	view := &v1State{g: newGraph(g.r.info, g.r, 0), state: b.state}
	if err := g.allowed(ev, view); err != nil {
		return
	}
	if g.alsoAllowed != nil && g.alsoAllowed(ev, view) != nil {
		return
	}
	b.add(ev)
}

// randomEvent tries one random event on a branch.
func (g *dagGen) randomEvent(b *branch) {
	pick := func() string { return g.users[g.rng.IntN(len(g.users))] }
	sender := pick()
	switch k := g.rng.IntN(10); {
	case k < 5:
		target := sender
		if g.rng.IntN(2) == 0 {
			target = pick()
		}
		memberships := []string{"join", "leave", "ban", "invite"}
		if g.r.info.Knocking {
			memberships = append(memberships, "knock")
		}
		m := memberships[g.rng.IntN(len(memberships))]
		content := member(m)
		if g.rng.IntN(3) == 0 {
			content["displayname"] = fmt.Sprint(g.n)
		}
		g.try(b, sender, "m.room.member", target, content)
	case k < 7:
		users := map[string]int{}
		for _, u := range g.users {
			if g.r.info.PrivilegedCreators && u == alice {
				continue
			}
			if g.rng.IntN(2) == 0 {
				users[u] = []int{0, 25, 50, 75, 100}[g.rng.IntN(5)]
			}
		}
		content := powerLevelsContent(users)
		if g.rng.IntN(3) == 0 {
			content["state_default"] = []int{0, 25, 50}[g.rng.IntN(3)]
		}
		g.try(b, sender, "m.room.power_levels", "", content)
	case k < 8:
		rules := []string{"public", "invite"}
		if g.r.info.Knocking {
			rules = append(rules, "knock")
		}
		g.try(b, sender, "m.room.join_rules", "", map[string]any{"join_rule": rules[g.rng.IntN(len(rules))]})
	default:
		g.try(b, sender, "m.room.topic", "", map[string]any{"topic": fmt.Sprint(g.n)})
	}
}

// mismatch is one disagreement between the implementations.
type mismatch struct {
	states []StateMap
	ours   StateMap
	theirs StateMap
	err    error
}

// run grows a random DAG and resolves at every merge, returning the
// disagreements. Our result becomes the merged branch's state.
func (g *dagGen) run(trunk *branch, steps int, compare func(states []StateMap) (StateMap, *mismatch)) []mismatch {
	branches := []*branch{trunk}
	var out []mismatch
	merge := func(bs []*branch) *branch {
		states := make([]StateMap, len(bs))
		var heads []string
		var depth int64
		for i, b := range bs {
			states[i] = b.state
			heads = append(heads, b.heads...)
			depth = max(depth, b.depth)
		}
		ours, m := compare(states)
		if m != nil {
			out = append(out, *m)
		}
		slices.Sort(heads)
		return &branch{r: g.r, state: ours, heads: slices.Compact(heads), depth: depth}
	}
	for range steps {
		switch k := g.rng.IntN(10); {
		case k < 6:
			g.randomEvent(branches[g.rng.IntN(len(branches))])
		case k < 8 && len(branches) < 4:
			branches = append(branches, branches[g.rng.IntN(len(branches))].fork())
		case len(branches) >= 2:
			g.rng.Shuffle(len(branches), func(i, j int) { branches[i], branches[j] = branches[j], branches[i] })
			n := 2
			if len(branches) > 2 && g.rng.IntN(3) == 0 {
				n = 3
			}
			merged := merge(branches[:n])
			branches = append([]*branch{merged}, branches[n:]...)
		}
	}
	if len(branches) > 1 {
		merge(branches)
	}
	return out
}

// differentialCases are the room versions compared with gomatrixserverlib,
// and the algorithm each is resolved with: room version 11 is also resolved
// with v2.1, because gomatrixserverlib's v2.1 cannot run on room version 12
// events once a power event is conflicted (it looks for the creators in a
// create event that v2.1 has not resolved yet, and panics).
var differentialCases = []struct {
	version event.RoomVersion
	algo    event.StateResAlgorithm
}{
	{"2", event.StateResV2}, {"3", event.StateResV2}, {"4", event.StateResV2}, {"5", event.StateResV2},
	{"6", event.StateResV2}, {"7", event.StateResV2}, {"8", event.StateResV2}, {"9", event.StateResV2},
	{"10", event.StateResV2}, {"11", event.StateResV2},
	{"11", event.StateResV2_1}, {"12", event.StateResV2_1},
}

// TestDifferentialGMSL compares with gomatrixserverlib. Every disagreement
// must be explained by the model of its known departures from the spec
// (emulation_test.go): with all of them emulated the answers must be equal.
// The quirks that each disagreement needs are counted and logged.
func TestDifferentialGMSL(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	differential(t, gmslAllowed(t), nil)
}

// differential runs the comparison with our resolver using the given auth
// rules; the DAGs are grown with gomatrixserverlib's, and alsoAllowed (if
// set) must accept their events too.
func differential(t *testing.T, allowed, alsoAllowed AllowedFunc) {
	for _, c := range differentialCases {
		name := "v" + string(c.version)
		if c.algo == event.StateResV2_1 {
			name += "-v2.1"
		}
		t.Run(name, func(t *testing.T) {
			seeds := []int64{}
			if *diffSeed >= 0 {
				seeds = append(seeds, *diffSeed)
			} else {
				for s := range *diffSeeds {
					seeds = append(seeds, int64(s))
				}
			}
			var total, agree, panics int
			needed := make([]int, quirkCount)
			for _, seed := range seeds {
				g, trunk := newDAGGen(t, c.version, seed)
				g.alsoAllowed = alsoAllowed
				info := g.r.info
				info.StateRes = c.algo
				resolve := func(res Resolver, states []StateMap) StateMap {
					got, err := res.Resolve(info, states, nil, g.r)
					if err != nil {
						t.Fatalf("seed %d: %v", seed, err)
					}
					return got
				}
				compare := func(states []StateMap) (StateMap, *mismatch) {
					total++
					ours := resolve(Resolver{Allowed: allowed}, states)
					theirs, err := gmslResolve(t, g.r, c.algo, states)
					if err != nil {
						if !strings.Contains(err.Error(), "missing resolved create event") {
							t.Fatalf("seed %d: gomatrixserverlib: %v", seed, err)
						}
						panics++
						return ours, nil
					}
					if diffStates(ours, theirs) == "" {
						agree++
						return ours, nil
					}
					emulated := resolve(withQuirks(allowed, allQuirks), states)
					if d := diffStates(emulated, theirs); d != "" {
						return ours, &mismatch{states: states, ours: emulated, theirs: theirs}
					}
					for q := range quirkCount {
						without := resolve(withQuirks(allowed, allQuirks&^(1<<q)), states)
						if diffStates(without, theirs) != "" {
							needed[q]++
							if *explain == quirkNames[q] {
								t.Logf("seed %d needs %s: spec vs gomatrixserverlib:\n%s\n%s", seed, quirkNames[q], diffStates(ours, theirs), g.describe(states))
							}
						}
					}
					return ours, nil
				}
				for i, m := range g.run(trunk, 60, compare) {
					if i < 2 {
						t.Errorf("seed %d: unexplained disagreement with gomatrixserverlib:\n%s\n%s",
							seed, diffStates(m.ours, m.theirs), g.describe(m.states))
					}
				}
			}
			var parts []string
			for q, n := range needed {
				parts = append(parts, fmt.Sprintf("%s %d", quirkNames[q], n))
			}
			t.Logf("%d resolutions: %d equal, %d explained by known differences (needing: %s), %d not comparable (gomatrixserverlib panics)",
				total, agree, total-agree-panics, strings.Join(parts, ", "), panics)
		})
	}
}

// describe prints a resolution's input for debugging: the conflicted keys
// and every event of the room.
func (g *dagGen) describe(states []StateMap) string {
	var b strings.Builder
	keys := map[StateKey]bool{}
	for _, s := range states {
		for k := range s {
			keys[k] = true
		}
	}
	for k := range keys {
		var vals []string
		same := true
		for _, s := range states {
			vals = append(vals, s[k])
			same = same && s[k] == states[0][k]
		}
		if !same {
			fmt.Fprintf(&b, "conflicted (%s, %s): %v\n", k.Type, k.StateKey, vals)
		}
	}
	ids := slices.Collect(maps.Keys(g.r.events))
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Compare(g.r.events[a].Depth()*1000+g.r.events[a].OriginServerTS(), g.r.events[b].Depth()*1000+g.r.events[b].OriginServerTS())
	})
	for _, id := range ids {
		ev := g.r.events[id]
		inAll := true
		for _, s := range states {
			k, _ := stateKeyOf(ev)
			inAll = inAll && s[k] == id
		}
		mark := " "
		if inAll {
			mark = "U"
		}
		fmt.Fprintf(&b, "%s %-28s ts=%-4d sk=%-22q %s auth=%v\n", mark, id, ev.OriginServerTS(), *ev.StateKey(), ev.Content(), ev.AuthEventIDs())
	}
	return b.String()
}

// TestDifferentialAuthRules resolves the random rooms with our resolver
// twice, with our auth rules and with gomatrixserverlib's, and requires
// every difference in the results to come with an event that the two auth
// rules judge differently: state resolution itself must not care which
// rules it runs. The DAGs hold only events that both accept where they are
// sent. The judgements that differ are logged, for matrix/authrules.
func TestDifferentialAuthRules(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	if !authrulesReady() {
		t.Skip("matrix/authrules does not implement the auth rules yet")
	}
	for _, c := range differentialCases {
		if c.algo == event.StateResV2_1 && c.version == "11" {
			continue
		}
		t.Run("v"+string(c.version), func(t *testing.T) {
			gmslRules := gmslAllowed(t)
			kinds := map[string]int{}
			var total, differ int
			for seed := range int64(*diffSeeds) {
				g, trunk := newDAGGen(t, c.version, seed)
				g.alsoAllowed = authrules.Allowed
				var disagreements []string
				both := func(ev *event.Event, auth authrules.AuthEvents) error {
					ours, theirs := authrules.Allowed(ev, auth), gmslRules(ev, auth)
					if (ours == nil) != (theirs == nil) {
						kind := ev.Type()
						if m, err := ev.Membership(); err == nil {
							prev := "none"
							if p := auth.Get("m.room.member", *ev.StateKey()); p != nil {
								prev, _ = p.Membership()
							}
							kind = fmt.Sprintf("%s %s->%s (self %v)", kind, prev, m, ev.Sender() == *ev.StateKey())
						}
						disagreements = append(disagreements, fmt.Sprintf("%s: ours %v, gomatrixserverlib %v", kind, ours, theirs))
					}
					return ours
				}
				g.run(trunk, 60, func(states []StateMap) (StateMap, *mismatch) {
					total++
					disagreements = disagreements[:0]
					ours, err := Resolver{Allowed: both}.Resolve(g.r.info, states, nil, g.r)
					if err != nil {
						t.Fatal(err)
					}
					withGMSLRules, err := Resolver{Allowed: gmslRules}.Resolve(g.r.info, states, nil, g.r)
					if err != nil {
						t.Fatal(err)
					}
					if d := diffStates(ours, withGMSLRules); d != "" {
						differ++
						if len(disagreements) == 0 {
							t.Errorf("seed %d: results differ with no auth disagreement:\n%s", seed, d)
						}
					}
					for _, d := range disagreements {
						kind, _, _ := strings.Cut(d, ":")
						if kinds[kind] == 0 {
							t.Logf("auth rules disagree: %s", d)
						}
						kinds[kind]++
					}
					return ours, nil
				})
			}
			t.Logf("%d resolutions, %d differ because the auth rules do (%d judgements differ)", total, differ, len(kinds))
		})
	}
}
