package tracking

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Stats are the counts of a time range, as eximstats and WHM's view give
// them.
type Stats struct {
	Since, Until time.Time
	Totals       map[string]int64 // by verdict
	// Series is per hour (range up to 3 days) or per day (UTC), oldest
	// first, every bucket present.
	Series                                                []Bucket
	TopSenders, TopSenderDomains, TopRecipients, TopHosts []Count // top 10
	RejectReasons, RejectLists, Viruses                   []Count
	Scores                                                []Count // spam score histogram: ScoreBuckets
	Delays                                                []Count // delivery delays: DelayBuckets
}

// Bucket is one period of Series.
type Bucket struct {
	Start  time.Time
	Counts map[string]int64
}

// Count is one row of a top list or histogram.
type Count struct {
	Key string
	N   int64
}

// ScoreBuckets and DelayBuckets are the histograms' keys, in order.
var (
	ScoreBuckets = []string{"<0", "0-2", "2-4", "4-6", "6-8", "8-10", "10-15", "15+"}
	DelayBuckets = []string{"<1s", "1-10s", "10s-1m", "1-10m", "10m-1h", ">1h"}
)

const (
	topN = 10
	// hourlyUpTo is the longest range Series counts per hour.
	hourlyUpTo = 3 * 24 * time.Hour
)

// Stats counts the attempts from since up to until.
func (s *Store) Stats(ctx context.Context, since, until time.Time) (*Stats, error) {
	if until.IsZero() {
		until = time.Now()
	}
	st := &Stats{Since: since, Until: until, Totals: map[string]int64{}}
	lo, hi := since.UnixMilli(), until.UnixMilli()
	rng := " time >= ? AND time < ?"
	var err error
	pairs := func(q string, each func(k string, n int64), args ...any) {
		if err != nil {
			return
		}
		rows, e := s.db.QueryContext(ctx, s.d.q(q), append(args, lo, hi)...)
		if e != nil {
			err = e
			return
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int64
			if e := rows.Scan(&k, &n); e != nil {
				err = e
				return
			}
			each(k, n)
		}
		err = rows.Err()
	}
	list := func(q string) []Count {
		var c []Count
		pairs(q, func(k string, n int64) { c = append(c, Count{k, n}) })
		return c
	}
	top := func(col, from, cond string) []Count {
		return list("SELECT " + col + ", count(*) AS n FROM " + from + " WHERE " + col + " <> ''" + cond + " AND" + rng +
			" GROUP BY " + col + " ORDER BY n DESC, " + col + " LIMIT " + strconv.Itoa(topN))
	}

	pairs("SELECT verdict, count(*) FROM messages WHERE"+rng+" GROUP BY verdict", func(k string, n int64) { st.Totals[k] = n })

	step := time.Hour
	if until.Sub(since) > hourlyUpTo {
		step = 24 * time.Hour
	}
	start := since.UTC().Truncate(step)
	for t := start; t.Before(until); t = t.Add(step) {
		st.Series = append(st.Series, Bucket{Start: t, Counts: map[string]int64{}})
	}
	if err == nil {
		rows, e := s.db.QueryContext(ctx, s.d.q("SELECT (time - ?) / ?, verdict, count(*) FROM messages WHERE"+rng+" GROUP BY 1, 2"),
			start.UnixMilli(), step.Milliseconds(), lo, hi)
		if e != nil {
			err = e
		} else {
			for rows.Next() {
				var b, n int64
				var v string
				if err = rows.Scan(&b, &v, &n); err != nil {
					break
				}
				if b >= 0 && int(b) < len(st.Series) {
					st.Series[b].Counts[v] += n
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	}

	st.TopSenders = top("sender", "messages", "")
	st.TopSenderDomains = top("sender_domain", "messages", "")
	st.TopRecipients = top("address", "recipients", "")
	st.TopHosts = top("client", "messages", "")
	st.RejectReasons = list("SELECT CASE WHEN reason_code <> '' THEN reason_code ELSE reason END AS r, count(*) AS n FROM messages" +
		" WHERE verdict IN ('rejected', 'tempfailed') AND" + rng + " GROUP BY 1 ORDER BY n DESC, 1 LIMIT " + strconv.Itoa(topN))
	st.RejectLists = top("list", "messages", " AND verdict IN ('rejected', 'tempfailed')")
	st.Viruses = top("virus", "messages", "")

	scores := map[string]int64{}
	pairs(`SELECT CASE WHEN score < 0 THEN '<0' WHEN score < 2 THEN '0-2' WHEN score < 4 THEN '2-4' WHEN score < 6 THEN '4-6'
		WHEN score < 8 THEN '6-8' WHEN score < 10 THEN '8-10' WHEN score < 15 THEN '10-15' ELSE '15+' END, count(*)
		FROM messages WHERE scored = 1 AND`+rng+" GROUP BY 1", func(k string, n int64) { scores[k] = n })
	st.Scores = ordered(ScoreBuckets, scores)

	delays := map[string]int64{}
	pairs(`SELECT CASE WHEN delay_ms < 1000 THEN '<1s' WHEN delay_ms < 10000 THEN '1-10s' WHEN delay_ms < 60000 THEN '10s-1m'
		WHEN delay_ms < 600000 THEN '1-10m' WHEN delay_ms < 3600000 THEN '10m-1h' ELSE '>1h' END, count(*)
		FROM recipients WHERE status = 'delivered' AND delay_ms >= 0 AND`+rng+" GROUP BY 1", func(k string, n int64) { delays[k] = n })
	st.Delays = ordered(DelayBuckets, delays)

	if err != nil {
		return nil, fmt.Errorf("tracking: stats: %w", err)
	}
	return st, nil
}

func ordered(keys []string, m map[string]int64) []Count {
	c := make([]Count, len(keys))
	for i, k := range keys {
		c[i] = Count{k, m[k]}
	}
	return c
}
