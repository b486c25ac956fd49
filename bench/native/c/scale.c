/* The native reference core (buddy.c) on NCPU CPUs, for the CPU-count axis of issue 13's target 5.
 *
 * Same algorithm and RNG as buddy.c (copied 2026-12-02 and changed only where the CPU count enters):
 * NCPU, PCP_HIGH and PCP_BATCH are compile-time parameters (-D; defaults 2, 378, 63 as in
 * buddy.c); the per-CPU list count and round-robin index live in arrays of NCPU entries instead
 * of slots of st[] (buddy.c's st[] has room for two CPUs); an event's CPU is r2 % NCPU (buddy.c:
 * r2 & 1, the same for two CPUs); blocks moved by refills and drains are counted. A main()
 * replaces the Python driver: GIB WARM_OPS OPS, then one JSON line with the CPU time per op.
 * With the defaults it reproduces buddy.c's run (same "hash" of allocated pfns as
 * `BUDDY_C=1 python bench.py numpy GIB WARM OPS`'s stats.hash; bench/native_scale.py checks it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define MAX_ORDER 10
#define NR_ORDERS 11
#define NMT 5
#define MOV 1
#define UNM 0
#define REC 2
#define ISO 4
#define PCPTYPES 3
#define PB_ORDER 9
#define PB_PAGES 512
#define COSTLY 3
#ifndef NCPU
#define NCPU 2
#endif
#ifndef PCP_HIGH
#define PCP_HIGH 378
#endif
#ifndef PCP_BATCH
#define PCP_BATCH 63
#endif
#ifndef PCP_AUTOTUNE
#define PCP_AUTOTUNE 0 /* 1: the v6.7+ pcp->high auto-tuning of mm/page_alloc.c, between HIGH_MIN and HIGH_MAX */
#endif
#ifndef HIGH_MIN
#define HIGH_MIN PCP_HIGH
#endif
#ifndef HIGH_MAX
#define HIGH_MAX PCP_HIGH
#endif
#ifndef PCP_THP
#define PCP_THP 0 /* 1: THPs (order PB_ORDER) on per-CPU lists too, two lists as in v6.18 (pcp_allowed_order) */
#endif
#define SCALE_MAX 5 /* CONFIG_PCP_BATCH_SCALE_MAX */
#define NBUDDY (NR_ORDERS*NMT)
#define NPCPL (4*PCPTYPES + (PCP_THP ? 2 : 0))
#define PCP_ORDER(o) ((o)<=COSTLY || (PCP_THP && (o)==PB_ORDER))
/* order_to_pindex(): orders 0..3 by type; the THP lists are NONMOVABLE, MOVABLE */
#define PINDEX(o, mt) ((o)<=COSTLY ? (o)*PCPTYPES+(mt) : 4*PCPTYPES+((mt)==MOV))
#define NLISTS (NBUDDY+NCPU*NPCPL)
enum {ST_NONE, ST_BUDDY, ST_PCP, ST_ALLOC};
enum {S_RNG, S_ALLOCS, S_FREES, S_FAILS, S_FALLBACKS, S_STEALS, S_USED, S_NALLOC, S_HASH,
      S_MERGES, S_SPLITS, S_REFILL, S_DRAIN, S_REFILL_BLOCKS, S_DRAIN_BLOCKS, S_REFILL_PAGES, S_DRAIN_PAGES, S_N, S_LEN};

typedef struct { int32_t *nxt, *prv; uint8_t *state, *order, *fmt, *pbmt; int64_t *nfree; int32_t *apfn; int64_t *st; int64_t N;
                 int64_t pcpcnt[NCPU], pindex[NCPU], high[NCPU], free_count[NCPU], alloc_factor[NCPU], prev_free_high_order[NCPU]; } Z;

static inline int64_t rng(Z *z){ int64_t x=z->st[S_RNG]; x^=(x<<13)&0xFFFFFFFF; x^=x>>17; x^=(x<<5)&0xFFFFFFFF; z->st[S_RNG]=x; return x; }
static inline void add_free(Z *z, int64_t pfn, int o, int mt, int tail){
  int lid=o*NMT+mt; int64_t h=z->N+lid;
  if(tail){ int64_t p=z->prv[h]; z->nxt[pfn]=h; z->prv[pfn]=p; z->nxt[p]=pfn; z->prv[h]=pfn; }
  else { int64_t n=z->nxt[h]; z->nxt[pfn]=n; z->prv[pfn]=h; z->prv[n]=pfn; z->nxt[h]=pfn; }
  z->state[pfn]=ST_BUDDY; z->order[pfn]=o; z->fmt[pfn]=mt; z->nfree[lid]++;
}
static inline void del_free(Z *z, int64_t pfn){
  int64_t n=z->nxt[pfn], p=z->prv[pfn]; z->nxt[p]=n; z->prv[n]=p;
  z->nfree[z->order[pfn]*NMT+z->fmt[pfn]]--; z->state[pfn]=ST_NONE;
}
static inline void expand(Z *z, int64_t pfn, int low, int high, int mt){
  int64_t size=1L<<high; while(high>low){ high--; size>>=1; add_free(z,pfn+size,high,mt,0); z->st[S_SPLITS]++; }
}
static int64_t rmqueue_smallest(Z *z, int o, int mt){
  for(int cur=o; cur<NR_ORDERS; cur++) if(z->nfree[cur*NMT+mt]>0){
    int64_t pfn=z->nxt[z->N+cur*NMT+mt]; del_free(z,pfn); expand(z,pfn,o,cur,mt); return pfn; }
  return -1;
}
static inline int fallback_mt(int s, int i){ if(s==UNM) return i==0?REC:MOV; if(s==MOV) return i==0?REC:UNM; return i==0?UNM:MOV; }
static inline int find_fallback(Z *z, int cur, int s){ for(int i=0;i<2;i++){int m=fallback_mt(s,i); if(z->nfree[cur*NMT+m]>0) return m;} return -1; }
static inline int can_steal(int cur, int s){ return cur>=PB_ORDER || cur>=PB_ORDER/2 || s==REC || s==UNM; }
static int64_t steal(Z *z, int64_t pfn, int cur, int o, int start, int btype, int whole){
  if(cur>=PB_ORDER){ int64_t b0=pfn>>PB_ORDER; for(int b=0;b<(1<<(cur-PB_ORDER));b++) z->pbmt[b0+b]=start;
    del_free(z,pfn); expand(z,pfn,o,cur,start); z->st[S_STEALS]++; return pfn; }
  if(whole){
    int64_t s0=pfn&~(int64_t)(PB_PAGES-1), end=s0+PB_PAGES; if(end>z->N) end=z->N;
    int64_t fp=0, mv=0, p=s0, alike;
    while(p<end){ int s=z->state[p];
      if(s==ST_BUDDY){ fp+=1L<<z->order[p]; p+=1L<<z->order[p]; }
      else if(s==ST_ALLOC){ if(z->fmt[p]==MOV) mv+=1L<<z->order[p]; p+=1L<<z->order[p]; }
      else if(s==ST_PCP) p+=1L<<z->order[p]; else p++; }
    if(start==MOV) alike=mv; else if(btype==MOV) alike=PB_PAGES-(fp+mv); else alike=0;
    if(fp+alike>=PB_PAGES/2){
      p=s0; while(p<end){ int s=z->state[p];
        if(s==ST_BUDDY){ int oo=z->order[p]; del_free(z,p); add_free(z,p,oo,start,1); p+=1L<<oo; }
        else if(s!=ST_NONE) p+=1L<<z->order[p]; else p++; }
      z->pbmt[s0>>PB_ORDER]=start; z->st[S_STEALS]++; return rmqueue_smallest(z,o,start);
    }
  }
  del_free(z,pfn); expand(z,pfn,o,cur,btype); return pfn;
}
static int64_t rmqueue_fallback(Z *z, int o, int start){
  for(int cur=MAX_ORDER; cur>=o; cur--){ int m=find_fallback(z,cur,start);
    if(m!=-1){ int cs=can_steal(cur,start);
      if(!cs && start==MOV && cur>o){ int c2=o, m2=-1; while(c2<NR_ORDERS){ m2=find_fallback(z,c2,start); if(m2!=-1) break; c2++; }
        cur=c2; m=m2; cs=can_steal(cur,start); }
      z->st[S_FALLBACKS]++; int64_t pfn=z->nxt[z->N+cur*NMT+m]; return steal(z,pfn,cur,o,start,m,cs); } }
  return -1;
}
static inline int64_t rmqueue(Z *z, int o, int mt){ int64_t p=rmqueue_smallest(z,o,mt); if(p<0) p=rmqueue_fallback(z,o,mt); return p; }
static void free_one_page(Z *z, int64_t pfn, int o, int mt){
  while(o<MAX_ORDER){ int64_t b=pfn^(1L<<o); if(b>=z->N) break;
    if(z->state[b]!=ST_BUDDY || z->order[b]!=o) break;
    int bmt=z->fmt[b]; if(o>=PB_ORDER && bmt!=mt && (mt>=PCPTYPES||bmt>=PCPTYPES)) break;
    del_free(z,b);
    if(o>=PB_ORDER && bmt!=mt){ int64_t b0=b>>PB_ORDER; for(int k=0;k<(1<<(o-PB_ORDER));k++) z->pbmt[b0+k]=mt; }
    pfn&=b; o++; z->st[S_MERGES]++; }
  int tail=0;
  if(o<MAX_ORDER-1){ int64_t hb=(pfn&~(1L<<o))^(1L<<(o+1)); if(hb<z->N && z->state[hb]==ST_BUDDY && z->order[hb]==o+1) tail=1; }
  add_free(z,pfn,o,mt,tail);
}
static void free_pcppages_bulk(Z *z, int cpu, int64_t count){
  int64_t *st=z->st; if(count>z->pcpcnt[cpu]) count=z->pcpcnt[cpu];
  int64_t pindex=z->pindex[cpu], base=z->N+NBUDDY+cpu*NPCPL, h=0; st[S_DRAIN]++;
  while(count>0){
    for(;;){ pindex++; if(pindex>=NPCPL) pindex=0; h=base+pindex; if(z->nxt[h]!=h) break; }
    int o=pindex<4*PCPTYPES ? pindex/PCPTYPES : PB_ORDER;
    for(;;){ int64_t pfn=z->prv[h], n=z->nxt[pfn], p=z->prv[pfn]; z->nxt[p]=n; z->prv[n]=p; z->state[pfn]=ST_NONE;
      count-=1L<<o; z->pcpcnt[cpu]-=1L<<o; int mt=z->pbmt[pfn>>PB_ORDER]; st[S_DRAIN_BLOCKS]++; st[S_DRAIN_PAGES]+=1L<<o;
      free_one_page(z,pfn,o,mt); if(count<=0 || z->nxt[h]==h) break; }
  }
  z->pindex[cpu]=pindex;
}
static void free_pcp(Z *z, int cpu, int64_t pfn, int o){
  int mt=z->pbmt[pfn>>PB_ORDER];
  if(mt>=PCPTYPES){ if(mt==ISO){ free_one_page(z,pfn,o,mt); return; } mt=MOV; }
  int64_t h=z->N+NBUDDY+cpu*NPCPL+PINDEX(o,mt), n=z->nxt[h];
  z->nxt[pfn]=n; z->prv[pfn]=h; z->prv[n]=pfn; z->nxt[h]=pfn;
  z->state[pfn]=ST_PCP; z->order[pfn]=o; z->fmt[pfn]=mt; z->pcpcnt[cpu]+=1L<<o;
#if PCP_AUTOTUNE
  /* free_frozen_page_commit(), nr_pcp_high(), nr_pcp_free() of v6.18, the zone never below its
   * high watermark and never reclaiming (the churn holds 20% free); PCPF_FREE_HIGH_BATCH unset. */
  int64_t batch=PCP_BATCH, high, nfree; int free_high=0;
  z->alloc_factor[cpu]>>=1;
  if(o && o<=COSTLY){ free_high = z->free_count[cpu]>=batch+HIGH_MIN/2 && z->prev_free_high_order[cpu]; z->prev_free_high_order[cpu]=1; }
  else z->prev_free_high_order[cpu]=0;
  if(z->free_count[cpu] < (batch<<SCALE_MAX)) z->free_count[cpu]+=1L<<o;
  high=z->high[cpu]; if(high<HIGH_MIN) high=HIGH_MIN; if(high>HIGH_MAX) high=HIGH_MAX; z->high[cpu]=high;
  if(free_high){ int64_t h=high-(batch<<SCALE_MAX); z->high[cpu]=h>HIGH_MIN?h:HIGH_MIN; high=0; }
  else if(HIGH_MIN!=HIGH_MAX && z->pcpcnt[cpu]>=high){ int64_t need=z->free_count[cpu]+batch;
    if(z->high[cpu]<need) z->high[cpu]= need<HIGH_MIN?HIGH_MIN:(need>HIGH_MAX?HIGH_MAX:need); }
  if(z->pcpcnt[cpu]>=high){
    if(free_high){ nfree=batch<<SCALE_MAX; if(z->pcpcnt[cpu]<nfree) nfree=z->pcpcnt[cpu]; }
    else if(high<batch) nfree=1;
    else { nfree=z->free_count[cpu]; if(nfree<batch) nfree=batch; if(nfree>high-batch) nfree=high-batch; }
    free_pcppages_bulk(z,cpu,nfree); }
#else
  if(z->pcpcnt[cpu]>=PCP_HIGH) free_pcppages_bulk(z,cpu,PCP_BATCH);
#endif
}
static int64_t rmqueue_pcp(Z *z, int cpu, int o, int mt){
  int64_t h=z->N+NBUDDY+cpu*NPCPL+PINDEX(o,mt);
#if PCP_AUTOTUNE
  z->free_count[cpu]>>=1;
#endif
  if(z->nxt[h]==h){ z->st[S_REFILL]++; int batch=PCP_BATCH;
#if PCP_AUTOTUNE
    { /* nr_pcp_alloc() of v6.18, the zone not below its high watermark */
      int64_t high=z->high[cpu]; if(high<HIGH_MIN) high=HIGH_MIN; if(high>HIGH_MAX) high=HIGH_MAX; z->high[cpu]=high;
      int64_t b = o ? PCP_BATCH : ((int64_t)PCP_BATCH << z->alloc_factor[cpu]);
      if(HIGH_MIN!=HIGH_MAX){ high+=b; if(high>HIGH_MAX) high=HIGH_MAX; z->high[cpu]=high; }
      if(!o){ int64_t mx=high-z->pcpcnt[cpu]-PCP_BATCH; if(mx<PCP_BATCH) mx=PCP_BATCH;
        if(b<=mx && z->alloc_factor[cpu]<SCALE_MAX) z->alloc_factor[cpu]++;
        if(b>mx) b=mx; }
      batch=(int)b; }
#endif
    if(o>0){ batch=batch>>o; if(batch<2) batch=2; }
    for(int i=0;i<batch;i++){ int64_t pfn=rmqueue(z,o,mt); if(pfn<0) break;
      int64_t p=z->prv[h]; z->nxt[pfn]=h; z->prv[pfn]=p; z->nxt[p]=pfn; z->prv[h]=pfn;
      z->state[pfn]=ST_PCP; z->order[pfn]=o; z->fmt[pfn]=mt; z->pcpcnt[cpu]+=1L<<o; z->st[S_REFILL_BLOCKS]++; z->st[S_REFILL_PAGES]+=1L<<o; }
    if(z->nxt[h]==h) return -1; }
  int64_t pfn=z->nxt[h], n=z->nxt[pfn]; z->nxt[h]=n; z->prv[n]=h; z->pcpcnt[cpu]-=1L<<o; return pfn;
}
static void init_zone(Z *z, int64_t seed){
  int64_t N=z->N;
  for(int i=0;i<NLISTS;i++){ z->nxt[N+i]=N+i; z->prv[N+i]=N+i; }
  for(int64_t b=0;b<(N>>PB_ORDER);b++) z->pbmt[b]=MOV;
  for(int64_t pfn=0; pfn+(1L<<MAX_ORDER)<=N; pfn+=1L<<MAX_ORDER) add_free(z,pfn,MAX_ORDER,MOV,1);
  z->st[S_RNG]=seed; z->st[S_N]=N;
}
static void run(Z *z, int64_t nops, int64_t target){
  int64_t *st=z->st; uint8_t *state=z->state, *order=z->order, *fmt=z->fmt, *pbmt=z->pbmt; int32_t *apfn=z->apfn;
  for(int64_t i=0;i<nops;i++){
    int64_t r=rng(z), r2=rng(z), nalloc=st[S_NALLOC], p=r&1023; int do_alloc;
    if(st[S_USED]<target) do_alloc=p<922; else do_alloc=p<102;
    if(nalloc==0) do_alloc=1;
    int cpu=(int)(r2%NCPU);
    if(do_alloc){ int o, mt; int64_t q=(r>>10)&1023;
      if(q<819) o=0; else if(q<973) o=1+((r2>>1)%3); else o=PB_ORDER;
      int64_t m=(r>>20)&1023; if(m<717) mt=MOV; else if(m<922) mt=UNM; else mt=REC;
      int64_t pfn = PCP_ORDER(o) ? rmqueue_pcp(z,cpu,o,mt) : rmqueue(z,o,mt);
      if(pfn<0) st[S_FAILS]++;
      else { state[pfn]=ST_ALLOC; order[pfn]=o; fmt[pfn]=mt; apfn[nalloc]=pfn; st[S_NALLOC]=nalloc+1;
        st[S_USED]+=1L<<o; st[S_ALLOCS]++; st[S_HASH]=(st[S_HASH]*31+pfn)&0xFFFFFFFF; }
    } else {
      int64_t idx=(r2>>1)%nalloc, pfn=apfn[idx]; apfn[idx]=apfn[nalloc-1]; st[S_NALLOC]=nalloc-1;
      int o=order[pfn]; state[pfn]=ST_NONE; st[S_USED]-=1L<<o; st[S_FREES]++;
      if(PCP_ORDER(o)) free_pcp(z,cpu,pfn,o); else free_one_page(z,pfn,o,pbmt[pfn>>PB_ORDER]);
    }
  }
}
static double cpu_s(void){ struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv){
  if(argc != 4){ fprintf(stderr, "usage: %s GIB WARM_OPS OPS\n", argv[0]); return 2; }
  double gib = atof(argv[1]); int64_t warm = atoll(argv[2]), ops = atoll(argv[3]);
  if(gib <= 0 || warm < 0 || ops <= 0){ fprintf(stderr, "%s: GIB and OPS must be above 0, WARM_OPS at least 0\n", argv[0]); return 2; }
  static Z zz; Z *z = &zz; int64_t N = (int64_t)(gib * 262144), M = N + NLISTS;
  z->N = N; z->nxt = calloc(M, 4); z->prv = calloc(M, 4); z->state = calloc(N, 1); z->order = calloc(N, 1);
  z->fmt = calloc(N, 1); z->pbmt = calloc((N >> PB_ORDER) + 1, 1); z->nfree = calloc(NBUDDY, 8); z->apfn = calloc(N, 4);
  z->st = calloc(S_LEN, 8);
  if(!z->nxt || !z->prv || !z->state || !z->order || !z->fmt || !z->pbmt || !z->nfree || !z->apfn || !z->st){ fprintf(stderr, "out of memory\n"); return 1; }
  init_zone(z, 2463534242LL);
  int64_t target = (int64_t)(N * 0.8);
  run(z, warm, target);
  int64_t b[S_LEN]; for(int i=0;i<S_LEN;i++) b[i]=z->st[i];
  double t = cpu_s(); run(z, ops, target); t = cpu_s() - t;
  printf("{\"ncpu\": %d, \"autotune\": %d, \"thp_pcp\": %d, \"high_min\": %d, \"high_max\": %d, \"pcp_high\": %d, \"pcp_batch\": %d, \"gib\": %g, \"ops\": %lld, \"ns_per_op\": %.2f, "
         "\"refill_blocks_per_op\": %.4f, \"drain_blocks_per_op\": %.4f, \"refill_pages_per_op\": %.4f, \"drain_pages_per_op\": %.4f, \"hash\": %lld}\n",
         NCPU, PCP_AUTOTUNE, PCP_THP, HIGH_MIN, HIGH_MAX, PCP_HIGH, PCP_BATCH, gib, (long long)ops, t / ops * 1e9,
         (double)(z->st[S_REFILL_BLOCKS] - b[S_REFILL_BLOCKS]) / ops, (double)(z->st[S_DRAIN_BLOCKS] - b[S_DRAIN_BLOCKS]) / ops,
         (double)(z->st[S_REFILL_PAGES] - b[S_REFILL_PAGES]) / ops, (double)(z->st[S_DRAIN_PAGES] - b[S_DRAIN_PAGES]) / ops,
         (long long)z->st[S_HASH]);
  return 0;
}
