#!/bin/bash
# What a disk bomb, an inode bomb and a flood of busy sessions get past a sandbox's limits.
# Run as root (loop mounts, cgroups) on a machine with 2+ GiB of free disk:
#   before: scripts/limits-figures.sh target/debug/agentd --sandbox-disk-mb 0 --max-sandboxes 100000
#   after:  scripts/limits-figures.sh target/debug/agentd --sandbox-disk-mb 256 --sandbox-disk-inodes 10000 --max-sandboxes 4
set -u
BIN=$1; shift
D=$(mktemp -d /tmp/fig.XXXX); chmod 755 $D; mkdir -p $D/scripts
cat > $D/scripts/bomb.yaml <<'Y'
turns:
  - tool_use: {name: bash, input: {command: 'for i in 1 2 3 4; do head -c 512M /dev/zero > b$i 2>/dev/null; done; echo bytes=$(du -sm . | cut -f1)MiB; rm -f b*; mkdir f && cd f && seq 1 100000 | xargs touch 2>/dev/null; echo files=$(ls | wc -l)'}}
  - text: done
Y
cat > $D/scripts/idle.yaml <<'Y'
turns:
  - tool_use: {name: bash, input: {command: 'echo up; sleep 8'}}
  - text: done
Y
printf 'kind: agent\nname: bomb\nmodel: scripted/bomb\ntools:\n  - type: agent_toolset_20260401\n---\nkind: agent\nname: idle\nmodel: scripted/idle\ntools:\n  - type: agent_toolset_20260401\n' > $D/a.yaml
AGENTD_LOG=warn $BIN serve --listen 127.0.0.1:18499 --data-dir $D --api-key sk-fig "$@" 2>$D/log & P=$!
sleep 2
export AGENTD_URL=http://127.0.0.1:18499 AGENTD_API_KEY=sk-fig
$BIN apply -f $D/a.yaml >/dev/null
$BIN run bomb go 2>&1 | grep -E "bytes=|files="
WS=$(ls -d $D/sandbox/workspaces/*/ | head -1)
echo "host disk for the workspace: $(du -smx $D/sandbox/workspaces | cut -f1) MiB"
for i in $(seq 1 12); do $BIN run idle go > $D/flood.$i 2>&1 & done
sleep 5
echo "flood of 12 busy sessions at once: live sandboxes (cgroups of this agentd): $(ls -d /sys/fs/cgroup/pids/agentd/sbx-$P-* 2>/dev/null | wc -l)"
wait $(jobs -p | grep -v "^$P$") 2>/dev/null
echo "  answered 'up': $(grep -l 'result: up' $D/flood.* | wc -l), refused: $(grep -l 'the most it allows' $D/flood.* | wc -l)"
grep -i warn $D/log | head -3
kill $P; wait $P 2>/dev/null
for m in $(awk '{print $2}' /proc/mounts | grep "^$D"); do umount --lazy $m; done
rm -rf $D
