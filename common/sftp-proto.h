/* SFTP version 3 (draft-ietf-secsh-filexfer-02) and OpenSSH's extensions. */
#ifndef HASHI_SFTP_PROTO_H
#define HASHI_SFTP_PROTO_H

#define SFTP_VERSION 3

/* Packet types */
#define SSH_FXP_INIT           1
#define SSH_FXP_VERSION        2
#define SSH_FXP_OPEN           3
#define SSH_FXP_CLOSE          4
#define SSH_FXP_READ           5
#define SSH_FXP_WRITE          6
#define SSH_FXP_LSTAT          7
#define SSH_FXP_FSTAT          8
#define SSH_FXP_SETSTAT        9
#define SSH_FXP_FSETSTAT      10
#define SSH_FXP_OPENDIR       11
#define SSH_FXP_READDIR       12
#define SSH_FXP_REMOVE        13
#define SSH_FXP_MKDIR         14
#define SSH_FXP_RMDIR         15
#define SSH_FXP_REALPATH      16
#define SSH_FXP_STAT          17
#define SSH_FXP_RENAME        18
#define SSH_FXP_READLINK      19
#define SSH_FXP_SYMLINK       20
#define SSH_FXP_STATUS       101
#define SSH_FXP_HANDLE       102
#define SSH_FXP_DATA         103
#define SSH_FXP_NAME         104
#define SSH_FXP_ATTRS        105
#define SSH_FXP_EXTENDED     200
#define SSH_FXP_EXTENDED_REPLY 201

/* Attribute flags */
#define SSH_FILEXFER_ATTR_SIZE        0x00000001
#define SSH_FILEXFER_ATTR_UIDGID      0x00000002
#define SSH_FILEXFER_ATTR_PERMISSIONS 0x00000004
#define SSH_FILEXFER_ATTR_ACMODTIME   0x00000008
#define SSH_FILEXFER_ATTR_EXTENDED    0x80000000

/* Open flags */
#define SSH_FXF_READ    0x00000001
#define SSH_FXF_WRITE   0x00000002
#define SSH_FXF_APPEND  0x00000004
#define SSH_FXF_CREAT   0x00000008
#define SSH_FXF_TRUNC   0x00000010
#define SSH_FXF_EXCL    0x00000020

/* Status codes */
#define SSH_FX_OK                0
#define SSH_FX_EOF               1
#define SSH_FX_NO_SUCH_FILE      2
#define SSH_FX_PERMISSION_DENIED 3
#define SSH_FX_FAILURE           4
#define SSH_FX_BAD_MESSAGE       5
#define SSH_FX_NO_CONNECTION     6
#define SSH_FX_CONNECTION_LOST   7
#define SSH_FX_OP_UNSUPPORTED    8
#define SSH_FX_MAX               8

/* statvfs@openssh.com f_flag bits */
#define SSH_FXE_STATVFS_ST_RDONLY 0x1
#define SSH_FXE_STATVFS_ST_NOSUID 0x2

/* Extension names */
#define SFTP_EXT_POSIX_RENAME  "posix-rename@openssh.com"
#define SFTP_EXT_STATVFS       "statvfs@openssh.com"
#define SFTP_EXT_FSTATVFS      "fstatvfs@openssh.com"
#define SFTP_EXT_HARDLINK      "hardlink@openssh.com"
#define SFTP_EXT_FSYNC         "fsync@openssh.com"
#define SFTP_EXT_LSETSTAT      "lsetstat@openssh.com"
#define SFTP_EXT_LIMITS        "limits@openssh.com"
#define SFTP_EXT_EXPAND_PATH   "expand-path@openssh.com"
#define SFTP_EXT_COPY_DATA     "copy-data"
#define SFTP_EXT_HOME_DIR      "home-directory"
#define SFTP_EXT_USERS_GROUPS  "users-groups-by-id@openssh.com"

/*
 * hashi's own extensions, used when both ends are hashi. man/PROTOCOL.hashi
 * describes each request and reply; every one is advertised in VERSION with
 * the version string SFTP_HASHI_EXT_VERSION.
 */
#define SFTP_HASHI_EXT_VERSION     "1"
#define SFTP_EXT_HASHI_ERRNO       "errno@hashi"
#define SFTP_EXT_HASHI_STAT        "stat@hashi"
#define SFTP_EXT_HASHI_READDIR     "readdir@hashi"
#define SFTP_EXT_HASHI_SETSTAT     "setstat@hashi"
#define SFTP_EXT_HASHI_OPEN        "open@hashi"
#define SFTP_EXT_HASHI_MKNOD       "mknod@hashi"
#define SFTP_EXT_HASHI_GETXATTR    "getxattr@hashi"
#define SFTP_EXT_HASHI_SETXATTR    "setxattr@hashi"
#define SFTP_EXT_HASHI_LISTXATTR   "listxattr@hashi"
#define SFTP_EXT_HASHI_REMOVEXATTR "removexattr@hashi"
#define SFTP_EXT_HASHI_LOCK        "lock@hashi"
#define SFTP_EXT_HASHI_FALLOCATE   "fallocate@hashi"
#define SFTP_EXT_HASHI_LSEEK       "lseek@hashi"

/* errno@hashi: request  uint32 enable (1 on, 0 off); reply STATUS.
 * Once on, every failure STATUS the server derives from a system error
 * carries one more field after the language tag:
 *     uint32 errno   (Linux's numbering: asm-generic/errno*.h)          */

/* "target, flags": many hashi requests name a file by a string that is a
 * path or, with HASHI_TARGET_HANDLE, a handle from OPEN/OPENDIR/open@hashi. */
#define HASHI_TARGET_HANDLE 0x00000001 /* the target string is a handle */
#define HASHI_TARGET_NOFOLLOW 0x00000002 /* a final symlink is not followed */

/* Full attributes ("hattrs"): one string whose contents are, in order,
 *     uint32 mask      HATTR_* fields the server knows (the others are 0)
 *     uint32 mode      type and permission bits (S_IF* | 07777)
 *     uint32 nlink
 *     uint32 uid
 *     uint32 gid
 *     uint32 blksize
 *     uint64 ino
 *     uint64 size
 *     uint64 blocks    in 512-byte units
 *     uint32 dev_major, dev_minor
 *     uint32 rdev_major, rdev_minor
 *     int64 atime_sec, uint32 atime_nsec
 *     int64 mtime_sec, uint32 mtime_nsec
 *     int64 ctime_sec, uint32 ctime_nsec
 *     int64 btime_sec, uint32 btime_nsec
 * that is HATTRS_V1_LEN bytes. A reader accepts a longer string and ignores
 * what follows (later versions append fields); a shorter one is an error. */
#define HATTRS_V1_LEN 112
#define HATTR_TYPE    0x00000001
#define HATTR_MODE    0x00000002
#define HATTR_NLINK   0x00000004
#define HATTR_UID     0x00000008
#define HATTR_GID     0x00000010
#define HATTR_ATIME   0x00000020
#define HATTR_MTIME   0x00000040
#define HATTR_CTIME   0x00000080
#define HATTR_INO     0x00000100
#define HATTR_SIZE    0x00000200
#define HATTR_BLOCKS  0x00000400
#define HATTR_BTIME   0x00000800
#define HATTR_DEV     0x00001000 /* dev and rdev */
#define HATTR_BLKSIZE 0x00002000

/* Attributes to set ("hsetattr"), in setstat@hashi: a fixed block
 *     uint32 valid     HSET_* fields to apply (the others are ignored)
 *     uint32 mode      07777 bits
 *     uint32 uid, gid
 *     uint64 size
 *     int64 atime_sec, uint32 atime_nsec
 *     int64 mtime_sec, uint32 mtime_nsec
 * HSETATTR_LEN bytes. A time with neither HSET_xTIME nor HSET_xTIME_NOW is
 * left as it is (UTIME_OMIT). */
#define HSETATTR_LEN      48
#define HSET_MODE         0x00000001
#define HSET_UID          0x00000002
#define HSET_GID          0x00000004
#define HSET_SIZE         0x00000008
#define HSET_ATIME        0x00000010
#define HSET_MTIME        0x00000020
#define HSET_ATIME_NOW    0x00000040
#define HSET_MTIME_NOW    0x00000080

/* "No owner given" in open@hashi and mknod@hashi. */
#define HASHI_ID_NONE 0xffffffffu

/* open@hashi flags: SSH_FXF_* plus these. */
#define HASHI_O_NOFOLLOW 0x00000100
#define HASHI_O_SYNC     0x00000200
#define HASHI_O_DSYNC    0x00000400
#define HASHI_O_NOATIME  0x00000800

/* setxattr@hashi flags (the values of XATTR_CREATE and XATTR_REPLACE). */
#define HASHI_XATTR_CREATE  0x1
#define HASHI_XATTR_REPLACE 0x2
/* Largest xattr value and name list moved in one reply (Linux's XATTR_SIZE_MAX). */
#define HASHI_XATTR_MAX     65536

/* lock@hashi operations, flags and lock types. */
#define HASHI_LOCK_GET    0 /* F_OFD_GETLK */
#define HASHI_LOCK_SET    1 /* F_OFD_SETLK, or F_OFD_SETLKW with HASHI_LOCK_WAIT */
#define HASHI_LOCK_FLOCK  2 /* flock(2): the whole file, start and len ignored */
#define HASHI_LOCK_CANCEL 3 /* end every wait on the handle with EINTR */
#define HASHI_LOCK_WAIT   0x00000001
#define HASHI_LOCK_RDLCK  0
#define HASHI_LOCK_WRLCK  1
#define HASHI_LOCK_UNLCK  2

/* fallocate@hashi modes (Linux's FALLOC_FL_* values). */
#define HASHI_FALLOC_KEEP_SIZE  0x01
#define HASHI_FALLOC_PUNCH_HOLE 0x02
#define HASHI_FALLOC_ZERO_RANGE 0x10

/* lseek@hashi whence (Linux's values). */
#define HASHI_SEEK_DATA 3
#define HASHI_SEEK_HOLE 4

/* Limits (the same as OpenSSH's sftp-server) */
#define SFTP_MAX_MSG_LENGTH   (256 * 1024)
#define SFTP_MAX_READ_LENGTH  (SFTP_MAX_MSG_LENGTH - 1024)
#define SFTP_MAX_WRITE_LENGTH (SFTP_MAX_MSG_LENGTH - 1024)
#define SFTP_MAX_HANDLE_LEN   256
/* Attribute extension pairs accepted in one ATTRS */
#define SFTP_MAX_ATTR_EXTENSIONS 64

#endif
