/* SPDX-License-Identifier: MIT */
/*
 * The QP state machine: every (cause, from, to) triple against a table written out here
 * independently of qp.c, plus names and argument checks.
 */
#include "test.h"

#include "error.h"
#include "qp.h"

#define I   SIW_QP_IDLE
#define RTR SIW_QP_RTR
#define RTS SIW_QP_RTS
#define CL  SIW_QP_CLOSING
#define TE  SIW_QP_TERMINATE
#define ER  SIW_QP_ERROR

/* The transitions that are not SIW_ERR_INVAL, and what they return. */
static const struct {
	enum siw_qp_cause why;
	enum siw_qp_state from, to;
	int ret;
} legal[] = {
    /* user (ibv_modify_qp) */
    {SIW_QP_BY_USER, I, I, 0},
    {SIW_QP_BY_USER, I, RTR, 0},
    {SIW_QP_BY_USER, I, RTS, SIW_QP_KEEP}, /* only the CM brings a QP up */
    {SIW_QP_BY_USER, I, ER, 0},
    {SIW_QP_BY_USER, RTR, I, 0},
    {SIW_QP_BY_USER, RTR, RTR, 0},
    {SIW_QP_BY_USER, RTR, RTS, SIW_QP_KEEP},
    {SIW_QP_BY_USER, RTR, ER, 0},
    {SIW_QP_BY_USER, RTS, RTS, 0},
    {SIW_QP_BY_USER, RTS, CL, 0}, /* SQD: graceful disconnect */
    {SIW_QP_BY_USER, RTS, ER, 0},
    {SIW_QP_BY_USER, CL, CL, 0},
    {SIW_QP_BY_USER, CL, ER, 0},
    {SIW_QP_BY_USER, TE, ER, 0},
    {SIW_QP_BY_USER, ER, I, 0}, /* RESET */
    {SIW_QP_BY_USER, ER, ER, 0},
    /* connection manager */
    {SIW_QP_BY_CM, I, RTS, 0},
    {SIW_QP_BY_CM, I, ER, 0},
    {SIW_QP_BY_CM, RTR, RTS, 0},
    {SIW_QP_BY_CM, RTR, ER, 0},
    {SIW_QP_BY_CM, RTS, CL, 0},
    {SIW_QP_BY_CM, RTS, ER, 0},
    {SIW_QP_BY_CM, CL, I, 0},
    {SIW_QP_BY_CM, CL, CL, 0},
    {SIW_QP_BY_CM, CL, ER, 0},
    {SIW_QP_BY_CM, TE, ER, 0},
    {SIW_QP_BY_CM, ER, ER, 0},
    /* errors */
    {SIW_QP_BY_ERROR, I, ER, 0},
    {SIW_QP_BY_ERROR, RTR, ER, 0},
    {SIW_QP_BY_ERROR, RTS, TE, 0},
    {SIW_QP_BY_ERROR, RTS, ER, 0},
    {SIW_QP_BY_ERROR, CL, ER, 0},
    {SIW_QP_BY_ERROR, TE, TE, 0}, /* the first error wins */
    {SIW_QP_BY_ERROR, TE, ER, 0},
    {SIW_QP_BY_ERROR, ER, ER, 0},
};

static const char *cause_name(enum siw_qp_cause c)
{
	return c == SIW_QP_BY_USER ? "user" : c == SIW_QP_BY_CM ? "cm" : "error";
}

static void test_whole_table(void)
{
	unsigned checked = 0, ok = 0;

	for (int why = SIW_QP_BY_USER; why <= SIW_QP_BY_ERROR; why++) {
		for (int from = 0; from < SIW_QP_NUM_STATES; from++) {
			for (int to = 0; to < SIW_QP_NUM_STATES; to++) {
				int want = SIW_ERR_INVAL, got;

				for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
					if ((int)legal[i].why == why &&
					    (int)legal[i].from == from && (int)legal[i].to == to)
						want = legal[i].ret;
				got = siw_qp_check_transition((enum siw_qp_state)from,
							      (enum siw_qp_state)to,
							      (enum siw_qp_cause)why);
				if (got != want)
					t_fail(__FILE__, __LINE__, "%s: %s -> %s: %d, want %d",
					       cause_name((enum siw_qp_cause)why),
					       siw_qp_state_name[from], siw_qp_state_name[to], got,
					       want);
				checked++;
				ok += got >= 0;
			}
		}
	}
	CHECK_UINT(checked, 3 * 6 * 6);
	CHECK_UINT(ok, sizeof(legal) / sizeof(legal[0]));
}

static void test_rules(void)
{
	/* any state -> ERROR, for every cause */
	for (int why = SIW_QP_BY_USER; why <= SIW_QP_BY_ERROR; why++)
		for (int s = 0; s < SIW_QP_NUM_STATES; s++)
			CHECK_INT(siw_qp_check_transition((enum siw_qp_state)s, SIW_QP_ERROR,
							  (enum siw_qp_cause)why),
				  0);
	/* only the user leaves ERROR, and only to IDLE */
	CHECK_INT(siw_qp_check_transition(ER, I, SIW_QP_BY_CM), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(ER, I, SIW_QP_BY_ERROR), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(ER, RTS, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(ER, RTS, SIW_QP_BY_CM), SIW_ERR_INVAL);
	/* only an error enters TERMINATE, and only from RTS */
	CHECK_INT(siw_qp_check_transition(RTS, TE, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(RTS, TE, SIW_QP_BY_CM), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(CL, TE, SIW_QP_BY_ERROR), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(I, TE, SIW_QP_BY_ERROR), SIW_ERR_INVAL);
	/* a connected QP is not reset directly */
	CHECK_INT(siw_qp_check_transition(RTS, I, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(RTS, RTR, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(TE, RTS, SIW_QP_BY_CM), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(CL, RTS, SIW_QP_BY_CM), SIW_ERR_INVAL);
	/* out of range */
	CHECK_INT(siw_qp_check_transition(SIW_QP_NUM_STATES, ER, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(I, SIW_QP_NUM_STATES, SIW_QP_BY_USER), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition(I, ER, (enum siw_qp_cause)3), SIW_ERR_INVAL);
	CHECK_INT(siw_qp_check_transition((enum siw_qp_state) - 1, ER, SIW_QP_BY_USER),
		  SIW_ERR_INVAL);
}

static void test_names(void)
{
	static const char *const want[] = {"IDLE", "RTR", "RTS", "CLOSING", "TERMINATE", "ERROR"};

	for (int s = 0; s < SIW_QP_NUM_STATES; s++) {
		REQUIRE(siw_qp_state_name[s] != NULL);
		CHECK(strcmp(siw_qp_state_name[s], want[s]) == 0);
	}
	CHECK(siw_qp_is_connected(RTS));
	CHECK(siw_qp_is_connected(CL));
	CHECK(!siw_qp_is_connected(I));
	CHECK(!siw_qp_is_connected(RTR));
	CHECK(!siw_qp_is_connected(TE));
	CHECK(!siw_qp_is_connected(ER));
}

T_MAIN(T_CASE(test_whole_table), T_CASE(test_rules), T_CASE(test_names))
