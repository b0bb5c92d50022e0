"""Every interval method's numbers on a fixed small input, pinned; the method table; the Bootstrap
passed whole; the Wilson interval of the coverage study.

The pinned numbers were computed with the code before ``biasvar/stats/intervals.py`` became a
package (commit 201ed0b): the refactor changed no interval (gauss-eb's bisection agrees to ~2e-15
relative, the rest bit for bit). A change to any method's statistics fails here.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest
from conftest import run_from_draws

from biasvar import report as R
from biasvar.errors import AnalysisError
from biasvar.stats import compare, describe_run
from biasvar.stats import intervals as iv
from biasvar.stats.gram import pair_gram, single_gram
from biasvar.studies.coverage import wilson

#: (method, case, quantity) -> per layer (two groups, then all parameters), from the code before the refactor
PINNED = {
    ("gauss-eb", "ref", "b2.low"): (0.07065035877721888, -0.03661013995398314, 0.014296473106387365),
    ("gauss-eb", "ref", "b2.high"): (0.19484403094983604, 0.2642727473434249, 0.2157862993182047),
    ("gauss-eb", "ref", "b2.se"): (0.026532274893442766, 0.05035499200649303, 0.036551593171554375),
    ("gauss-eb", "ref", "variance.low"): (0.3745346894655125, 1.9401915416274187, 1.3064414492985443),
    ("gauss-eb", "ref", "variance.high"): (0.5052998219378103, 2.4605577540335557, 1.622993660559866),
    ("gauss-eb", "ref", "mse.low"): (0.5005487984634002, 1.9809213835620532, 1.3788528724384759),
    ("gauss-eb", "ref", "mse.high"): (0.6589839111444773, 2.534838863943775, 1.741339733625305),
    ("gauss-eb", "exact", "b2.low"): (0.0357840981692857, -0.002073007766448797, 0.011468799574761528),
    ("gauss-eb", "exact", "b2.high"): (0.1218800311160158, 0.16596900004686477, 0.12475265265338845),
    ("gauss-eb", "exact", "b2.se"): (0.018228636971399936, 0.023771072857414605, 0.0169912057142163),
    ("gauss-eb", "exact", "variance.low"): (0.38060175858832157, 1.8657083952398228, 1.2850777380881306),
    ("gauss-eb", "exact", "variance.high"): (0.5090727028588294, 2.500919733209143, 1.6545950012529487),
    ("gauss-eb", "exact", "mse.low"): (0.4496538232407783, 1.893300336861817, 1.3266335314773174),
    ("gauss-eb", "exact", "mse.high"): (0.583685346436353, 2.573646230789608, 1.715350631760576),
    ("gauss-eb", "alone", "b2.low"): None,
    ("gauss-eb", "alone", "b2.high"): None,
    ("gauss-eb", "alone", "b2.se"): (0.0037769361378501027, 0.016047620114427563, 0.009582849199188377),
    ("gauss-eb", "alone", "variance.low"): (0.37282871067957635, 1.8890433283021117, 1.2904228228036243),
    ("gauss-eb", "alone", "variance.high"): (0.509423694656159, 2.484196031145793, 1.627837791245675),
    ("gauss-eb", "alone", "mse.low"): None,
    ("gauss-eb", "alone", "mse.high"): None,
    ("gauss-fit", "ref", "b2.low"): (0.07555858654946064, -0.037397901158136015, 0.018083008358971298),
    ("gauss-fit", "ref", "b2.high"): (0.18831170860961727, 0.20795712913704328, 0.1926155523770416),
    ("gauss-fit", "ref", "b2.se"): (0.026532274893442766, 0.05035499200649303, 0.036551593171554375),
    ("gauss-fit", "ref", "variance.low"): (0.3745346894655125, 1.9401915416274187, 1.3064414492985443),
    ("gauss-fit", "ref", "variance.high"): (0.5052998219378103, 2.4605577540335557, 1.622993660559866),
    ("gauss-fit", "ref", "variance.se"): (0.03424149016189506, 0.13250002640925362, 0.08002828449073934),
    ("gauss-fit", "ref", "mse.low"): (0.5005487984634002, 1.9809213835620532, 1.3788528724384759),
    ("gauss-fit", "ref", "mse.high"): (0.6589839111444773, 2.534838863943775, 1.741339733625305),
    ("gauss-fit", "ref", "mse.se"): (0.0399629150370893, 0.14001097883644117, 0.08907658780283993),
    ("gauss-fit", "exact", "b2.low"): (0.037071645024685504, -0.0012405216112230588, 0.01242812164675243),
    ("gauss-fit", "exact", "b2.high"): (0.11954456691711886, 0.14021548321346528, 0.12247991140255524),
    ("gauss-fit", "exact", "b2.se"): (0.018228636971399936, 0.023771072857414605, 0.0169912057142163),
    ("gauss-fit", "exact", "variance.low"): (0.38060175858832157, 1.8657083952398228, 1.2850777380881306),
    ("gauss-fit", "exact", "variance.high"): (0.5090727028588294, 2.500919733209143, 1.6545950012529487),
    ("gauss-fit", "exact", "variance.se"): (0.035371327168910185, 0.15107925316803725, 0.09009740188620675),
    ("gauss-fit", "exact", "mse.low"): (0.4496538232407783, 1.893300336861817, 1.3266335314773174),
    ("gauss-fit", "exact", "mse.high"): (0.583685346436353, 2.573646230789608, 1.715350631760576),
    ("gauss-fit", "exact", "mse.se"): (0.03700719464566644, 0.15144961230458748, 0.0943936857343534),
    ("gauss-fit", "alone", "b2.low"): None,
    ("gauss-fit", "alone", "b2.high"): None,
    ("gauss-fit", "alone", "b2.se"): (0.0037769361378501027, 0.016047620114427563, 0.009582849199188377),
    ("gauss-fit", "alone", "variance.low"): (0.37282871067957635, 1.8890433283021117, 1.2904228228036243),
    ("gauss-fit", "alone", "variance.high"): (0.509423694656159, 2.484196031145793, 1.627837791245675),
    ("gauss-fit", "alone", "variance.se"): (0.03444731725829136, 0.15134251196307164, 0.089239290099595),
    ("gauss-fit", "alone", "mse.low"): None,
    ("gauss-fit", "alone", "mse.high"): None,
    ("gauss-fit", "alone", "mse.se"): (0.032070052613803836, 0.15070300231069778, 0.08877538016783329),
    ("pivot", "ref", "b2.low"): (0.08568006665682733, -0.03157697977766008, 0.014656380131003403),
    ("pivot", "ref", "b2.high"): (0.1820083904842879, 0.16311007763124274, 0.14743444139361334),
    ("pivot", "ref", "b2.se"): (0.026532274893442766, 0.05035499200649303, 0.036551593171554375),
    ("pivot", "ref", "variance.low"): (0.3745346894655125, 1.9401915416274187, 1.3064414492985443),
    ("pivot", "ref", "variance.high"): (0.5052998219378103, 2.4605577540335557, 1.622993660559866),
    ("pivot", "ref", "mse.low"): (0.5005487984634002, 1.9809213835620532, 1.3788528724384759),
    ("pivot", "ref", "mse.high"): (0.6589839111444773, 2.534838863943775, 1.741339733625305),
    ("pivot", "exact", "b2.low"): (0.039987526517641085, 0.0007815564288252246, 0.023971705635334455),
    ("pivot", "exact", "b2.high"): (0.11491896155218373, 0.0868925635129317, 0.08781344004191605),
    ("pivot", "exact", "b2.se"): (0.018228636971399936, 0.023771072857414605, 0.0169912057142163),
    ("pivot", "exact", "variance.low"): (0.38060175858832157, 1.8657083952398228, 1.2850777380881306),
    ("pivot", "exact", "variance.high"): (0.5090727028588294, 2.500919733209143, 1.6545950012529487),
    ("pivot", "exact", "mse.low"): (0.4496538232407783, 1.893300336861817, 1.3266335314773174),
    ("pivot", "exact", "mse.high"): (0.583685346436353, 2.573646230789608, 1.715350631760576),
    ("pivot", "alone", "b2.low"): None,
    ("pivot", "alone", "b2.high"): None,
    ("pivot", "alone", "b2.se"): (0.0037769361378501027, 0.016047620114427563, 0.009582849199188377),
    ("pivot", "alone", "variance.low"): (0.37282871067957635, 1.8890433283021117, 1.2904228228036243),
    ("pivot", "alone", "variance.high"): (0.509423694656159, 2.484196031145793, 1.627837791245675),
    ("pivot", "alone", "mse.low"): None,
    ("pivot", "alone", "mse.high"): None,
    ("jackknife-t", "ref", "b2.low"): (0.07184294527233417, -0.0756879426298634, 0.0016349110097704511),
    ("jackknife-t", "ref", "b2.high"): (0.18462630296548718, 0.15451561131166203, 0.15121008248703768),
    ("jackknife-t", "ref", "b2.se"): (0.02633076100660972, 0.05322894890996387, 0.034675748218597695),
    ("jackknife-t", "ref", "variance.low"): (0.3595718977974438, 1.8670210678560202, 1.2688025643699254),
    ("jackknife-t", "ref", "variance.high"): (0.5198291081910109, 2.5240081284875484, 1.6590482193256788),
    ("jackknife-t", "ref", "mse.low"): (0.4770789501058771, 1.8933650311185102, 1.3268210174988129),
    ("jackknife-t", "ref", "mse.high"): (0.6587913041203991, 2.5764918339068568, 1.7538747596935993),
    ("jackknife-t", "exact", "b2.low"): (0.03077649201039967, -0.006449242659694189, 0.018956422100458684),
    ("jackknife-t", "exact", "b2.high"): (0.10702913775800085, 0.08670241073700644, 0.08527693834814036),
    ("jackknife-t", "exact", "b2.se"): (0.016853967310847554, 0.020589120625349358, 0.014658688913913842),
    ("jackknife-t", "exact", "variance.low"): (0.35957189779744375, 1.867021067856021, 1.2688025643699254),
    ("jackknife-t", "exact", "variance.high"): (0.5198291081910107, 2.5240081284875484, 1.6590482193256788),
    ("jackknife-t", "exact", "mse.low"): (0.4266316994757443, 1.9105053967775858, 1.313432733693414),
    ("jackknife-t", "exact", "mse.high"): (0.5905749362811107, 2.5607769676432954, 1.7186514104507895),
    ("jackknife-t", "alone", "b2.low"): None,
    ("jackknife-t", "alone", "b2.high"): None,
    ("jackknife-t", "alone", "b2.se"): (0.0020687751852209962, 0.005620550481035765, 0.003372578671097353),
    ("jackknife-t", "alone", "variance.low"): (0.35957189779744375, 1.867021067856021, 1.268802564369925),
    ("jackknife-t", "alone", "variance.high"): (0.5198291081910107, 2.5240081284875484, 1.6590482193256793),
    ("jackknife-t", "alone", "mse.low"): None,
    ("jackknife-t", "alone", "mse.high"): None,
    ("percentile", "ref", "b2.low"): (0.10416885184335599, 0.018564489938424945, 0.06855979064546475),
    ("percentile", "ref", "b2.high"): (0.19439448289729866, 0.2908333486155026, 0.2334434050459799),
    ("percentile", "ref", "b2.se"): (0.02543170766417494, 0.06764872244979649, 0.042775396707152816),
    ("percentile", "ref", "variance.low"): (0.37530026784857395, 1.9244084204422454, 1.3006461969035152),
    ("percentile", "ref", "variance.high"): (0.4993549649924058, 2.4180711550217535, 1.6009539926880891),
    ("percentile", "ref", "mse.low"): (0.5134130875274249, 1.9753227638524269, 1.3887614829137032),
    ("percentile", "ref", "mse.high"): (0.6562140642254547, 2.6054162146659525, 1.7601257262314316),
    ("percentile", "exact", "b2.low"): (0.04918118559222248, 0.03532639005550988, 0.04673496934096355),
    ("percentile", "exact", "b2.high"): (0.1104377428879861, 0.14637639033163194, 0.12122772141501241),
    ("percentile", "exact", "b2.se"): (0.01552183739961115, 0.03162635443327061, 0.019490215618308816),
    ("percentile", "exact", "variance.low"): (0.3699035975467803, 1.8817211245611196, 1.2673446220870415),
    ("percentile", "exact", "variance.high"): (0.4917818366609895, 2.4843355116249337, 1.6178994779928406),
    ("percentile", "exact", "mse.low"): (0.4480255475390147, 1.9969508395236888, 1.3596583958295485),
    ("percentile", "exact", "mse.high"): (0.5823234985205007, 2.5222604050355715, 1.6899727296385505),
    ("percentile", "alone", "b2.low"): (-0.005531354438527097, -0.027825410114271164, -0.017654620966642935),
    ("percentile", "alone", "b2.high"): (0.01096860497363347, 0.06657883938254969, 0.04445846580307406),
    ("percentile", "alone", "b2.se"): (0.004787234625892322, 0.02348142849780467, 0.014856114996024784),
    ("percentile", "alone", "variance.low"): (0.3679535998543321, 1.8862849282628513, 1.285462328650519),
    ("percentile", "alone", "variance.high"): (0.49753897975039363, 2.450896357240272, 1.6055622737237334),
    ("percentile", "alone", "mse.low"): (0.37555053004429184, 1.896928804189088, 1.2843249021751606),
    ("percentile", "alone", "mse.high"): (0.49517547639033116, 2.4233330700169535, 1.607438806766523),
    ("basic", "ref", "b2.low"): (0.0620747653405227, -0.21200567993370395, -0.08059841154917177),
    ("basic", "ref", "b2.high"): (0.15230039639446535, 0.06026317874337369, 0.08428520285134339),
    ("basic", "ref", "b2.se"): (0.02543170766417494, 0.06764872244979649, 0.042775396707152816),
    ("basic", "ref", "variance.low"): (0.38004604099604894, 1.972958041321815, 1.3268967910075151),
    ("basic", "ref", "variance.high"): (0.5041007381398808, 2.4666207759013234, 1.627204586792089),
    ("basic", "ref", "mse.low"): (0.4796561900008215, 1.8644406503594144, 1.3205700509609806),
    ("basic", "ref", "mse.high"): (0.6224571666988513, 2.49453410117294, 1.691934294278709),
    ("basic", "exact", "b2.low"): (0.027367886880414416, -0.0661232222543197, -0.016994360966413366),
    ("basic", "exact", "b2.high"): (0.08862444417617804, 0.04492677802180236, 0.057498391107635494),
    ("basic", "exact", "b2.se"): (0.01552183739961115, 0.03162635443327061, 0.019490215618308816),
    ("basic", "exact", "variance.low"): (0.387619169327465, 1.9066936847186358, 1.3099513057027636),
    ("basic", "exact", "variance.high"): (0.5094974084416741, 2.50930807178245, 1.6605061616085628),
    ("basic", "exact", "mse.low"): (0.4348831372363543, 1.94902195938531, 1.342111414505653),
    ("basic", "exact", "mse.high"): (0.5691810882178403, 2.4743315248971927, 1.672425748314655),
    ("basic", "alone", "b2.low"): (-0.025625288406774405, -0.1397626593216092, -0.09325597886466748),
    ("basic", "alone", "b2.high"): (-0.009125328994613838, -0.04535840982478833, -0.031142892094950483),
    ("basic", "alone", "b2.se"): (0.004787234625892322, 0.02348142849780467, 0.014856114996024784),
    ("basic", "alone", "variance.low"): (0.38186202623806087, 1.9401328391032973, 1.3222885099718709),
    ("basic", "alone", "variance.high"): (0.5114474061341223, 2.504744268080718, 1.6423884550450853),
    ("basic", "alone", "mse.low"): (0.36956884616498237, 1.8945123063875569, 1.2716144638674876),
    ("basic", "alone", "mse.high"): (0.4891937925110217, 2.4209165722154227, 1.59472836845885),
    ("bca", "ref", "b2.low"): (0.07398522681197511, -0.013780915869166374, 0.05228849296223886),
    ("bca", "ref", "b2.high"): (0.1617594657727261, 0.06178398821143671, 0.08924561811396836),
    ("bca", "ref", "b2.se"): (0.02543170766417494, 0.06764872244979649, 0.042775396707152816),
    ("bca", "ref", "variance.low"): (0.37951138859200245, 1.9513341084906717, 1.3202411046411706),
    ("bca", "ref", "variance.high"): (0.5115727809302367, 2.4404030083063675, 1.6069461553602178),
    ("bca", "ref", "mse.low"): (0.4875774619171175, 1.9308563419794134, 1.358629309690329),
    ("bca", "ref", "mse.high"): (0.6379247145866149, 2.4789484610191654, 1.677884364218466),
    ("bca", "exact", "b2.low"): (0.04529061920524113, 0.02831976245584039, 0.04050067645452965),
    ("bca", "exact", "b2.high"): (0.0917335588137156, 0.04978241141485911, 0.05481853336247114),
    ("bca", "exact", "b2.se"): (0.01552183739961115, 0.03162635443327061, 0.019490215618308816),
    ("bca", "exact", "variance.low"): (0.3794690801741125, 1.8864160403121895, 1.274388716724994),
    ("bca", "exact", "variance.high"): (0.508498835059734, 2.491113417187443, 1.637352679235753),
    ("bca", "exact", "mse.low"): (0.4489843818396082, 1.9796482935949757, 1.3397137209259742),
    ("bca", "exact", "mse.high"): (0.5825135915279109, 2.490064504202116, 1.6746062249951892),
    ("bca", "alone", "b2.low"): (math.nan, math.nan, math.nan),
    ("bca", "alone", "b2.high"): (math.nan, math.nan, math.nan),
    ("bca", "alone", "b2.se"): (0.004787234625892322, 0.02348142849780467, 0.014856114996024784),
    ("bca", "alone", "variance.low"): (0.38751194737726, 1.9744325918240742, 1.3278431300046236),
    ("bca", "alone", "variance.high"): (0.5099840968425128, 2.4912464293639274, 1.6348905107547593),
    ("bca", "alone", "mse.low"): (0.3826253326687384, 1.862163264847253, 1.2746614807553889),
    ("bca", "alone", "mse.high"): (0.5052717696568391, 2.3839247640385257, 1.5824379409600562),
}
#: method -> (ref_share, ref_only_width) against the reference run
PINNED_SHARE = {
    "gauss-eb": (0.3486930271470451, 0.08385962514555907),
    "gauss-fit": (0.47321637791359833, 0.10176199358886473),
    "pivot": (0.4593617288825652, 0.10954938638882387),
    "jackknife-t": (0.6651375342101495, 0.13374381402115645),
    "percentile": (0.4031762544065175, 0.09914235443092986),
    "basic": (0.4031762544065175, 0.09914235443092986),
    "bca": (0.4031762544065175, 0.09914235443092986),
}


def _runs():
    rng = np.random.default_rng(20)
    d = 24
    scale = np.linspace(0.3, 2.0, d)
    ref = run_from_draws(rng.standard_normal((48, d)) * scale, [6] * 8, [10, 14], spec="rf(M=4)")
    test = run_from_draws(rng.standard_normal((60, d)) * scale + 0.25, [6] * 10, [10, 14], spec="zgr")
    return ref, test


def _intervals(method: str, kind: str) -> iv.PairIntervals:
    ref, test = _runs()
    boot = iv.Bootstrap(200, method)
    if kind == "ref":
        return iv.bootstrap_pair(pair_gram(ref, test)[0], boot, rng=np.random.default_rng(1))
    if kind == "exact":
        return iv.bootstrap_pair(pair_gram(None, test, exact=np.zeros(24))[0], boot, rng=np.random.default_rng(2))
    return iv.bootstrap_pair(single_gram(test, None), boot, rng=np.random.default_rng(3), with_b2=False)


@pytest.mark.parametrize("method", list(iv.METHODS))
@pytest.mark.parametrize("kind", ["ref", "exact", "alone"])
def test_every_method_gives_the_pinned_numbers(method, kind):
    res = _intervals(method, kind)
    for (m, k, q), want in PINNED.items():
        if (m, k) != (method, kind):
            continue
        what, field = q.split(".")
        got = getattr(getattr(res, what), field)
        if want is None:
            assert got is None, q
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=0, err_msg=f"{method} {kind} {q}")
    if kind == "ref":
        share, width = PINNED_SHARE[method]
        assert res.ref_share == pytest.approx(share, rel=1e-10)
        assert res.ref_only_width == pytest.approx(width, rel=1e-10)
    else:
        assert res.ref_share is None and res.ref_only_width is None


def test_the_pinned_cases_cover_every_method():
    assert {m for m, _, _ in PINNED} == set(iv.METHODS) == set(PINNED_SHARE)


def test_the_method_table_is_read_only_and_every_method_has_one_signature():
    assert isinstance(iv.METHODS, MappingProxyType)
    with pytest.raises(TypeError):
        iv.METHODS["mine"] = iv.METHODS["pivot"]  # type: ignore[index]
    assert next(iter(iv.METHODS)) == iv.DEFAULT_METHOD
    params = {name: list(inspect.signature(f).parameters) for name, f in iv.METHODS.items()}
    want = ["pg", "b2", "v_t", "boot", "rng", "with_b2", "share"]
    assert all(p == want for p in params.values()), params


def test_the_cli_offers_the_methods_of_the_table():
    from biasvar_cli.report_cmd import Method

    from biasvar import names

    assert [m.value for m in Method] == list(iv.METHODS) == list(names.METHODS)


def test_bootstrap_validates_against_the_table_and_carries_the_seed():
    with pytest.raises(AnalysisError, match="unknown bootstrap method 'studentized'.*gauss-eb, gauss-fit, pivot"):
        iv.Bootstrap(10, "studentized")
    with pytest.raises(AnalysisError, match="seed must be a non-negative integer"):
        iv.Bootstrap(10, "pivot", 0.95, -1)
    assert iv.Bootstrap(10, "pivot", 0.9, 7).seed == 7


def test_compare_takes_a_bootstrap_whole_or_its_fields_not_both():
    ref, test = _runs()
    boot = iv.Bootstrap(50, "pivot", 0.9, seed=4)
    whole = compare(ref, test, boot=boot)
    loose = compare(ref, test, n_resamples=50, method="pivot", confidence_level=0.9, rng=np.random.default_rng(4))
    assert whole == loose  # the seed of the Bootstrap is the default rng's
    assert compare(ref, test, boot=boot) != compare(ref, test, boot=iv.Bootstrap(50, "pivot", 0.9, seed=5))
    with pytest.raises(AnalysisError, match="not both"):
        compare(ref, test, boot=boot, method="pivot")
    alone = describe_run(test, boot)
    assert alone.b2 is None and alone == describe_run(test, n_resamples=50, method="pivot", confidence_level=0.9,
                                                      rng=np.random.default_rng(4))


def test_a_report_uses_its_seed_and_recomputed_marks_keep_every_other_field():
    ref, test = _runs()
    a = R.analyze([ref, test], n_resamples=40, method="pivot", seed=3)
    assert a.seed == 3 and a.method == "pivot" and a.n_resamples == 40
    other = R.analyze([ref, test], n_resamples=40, method="pivot", seed=4)
    assert [r.variance for r in a.rows] != [r.variance for r in other.rows]  # the seed reaches the resampling
    unmarked = replace(a, rows=tuple(replace(r, pareto=False, pareto_mark="") for r in a.rows))
    assert [r.pareto_mark for r in a.rows if r.b2 is not None] == ["*"]
    assert R.remark_pareto(unmarked) == a


@pytest.mark.parametrize(("hits", "total", "level", "low", "high"), [
    (475, 500, 0.95, 0.9272318388284524, 0.9659062547561506),
    (1900, 2000, 0.95, 0.9395558910656041, 0.9587187663812682),
    (1763, 2000, 0.95, 0.8665987726575222, 0.8949385202668816),
    (3, 40, 0.9, 0.030370252611739007, 0.17348017873690036),
    (0, 10, 0.95, 0.0, 0.2775327998628892),
    (10, 10, 0.95, 0.7224672001371107, 0.9999999999999999),
    (0, 0, 0.95, 0.0, 1.0),
])
def test_wilson_gives_the_numbers_of_the_hand_written_formula(hits, total, level, low, high):
    """Pinned from the formula coverage.py had before it called scipy."""
    got = wilson(hits, total, level)
    assert math.isclose(got[0], low, rel_tol=1e-12, abs_tol=1e-15) and math.isclose(got[1], high, rel_tol=1e-12)
